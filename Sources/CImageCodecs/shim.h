#pragma once
// PNG and JPEG through Debian's libpng 1.6 and libjpeg-turbo, behind functions Swift can call.
//
// Both libraries report errors by longjmp, which must never cross a Swift frame. libpng's
// simplified API (png_image_*) catches its own; for libjpeg the setjmp and every libjpeg call it
// guards live in ddp_jpeg_read below, in C. Each function returns 1 on success, or 0 with a
// one-line reason in `message`. Decoded pixels are 8-bit RGB, row-major, no padding, allocated
// with malloc (the caller frees them).
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>

/// Images above this many pixels are refused before any pixel memory is allocated.
#define DDP_IMAGE_MAX_PIXELS (1u << 28)

static inline int ddp_too_large(unsigned long width, unsigned long height, char *message, size_t size) {
    if (width == 0 || height == 0 || width * height > DDP_IMAGE_MAX_PIXELS) {
        snprintf(message, size, "%lux%lu pixels is outside the supported 1 to %u pixels", width, height, DDP_IMAGE_MAX_PIXELS);
        return 1;
    }
    return 0;
}

static inline int ddp_png_read(const char *path, unsigned char **pixels, int *width, int *height,
                               char *message, size_t size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&image, path)) {
        snprintf(message, size, "%s", image.message);
        return 0;
    }
    if (ddp_too_large(image.width, image.height, message, size)) {
        png_image_free(&image);
        return 0;
    }
    image.format = PNG_FORMAT_RGB;  // grey, palette and 16-bit convert; alpha is composited on white
    unsigned char *buffer = malloc(PNG_IMAGE_SIZE(image));
    if (buffer == NULL) {
        png_image_free(&image);
        snprintf(message, size, "out of memory for %ux%u pixels", image.width, image.height);
        return 0;
    }
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&image, &white, buffer, 0, NULL)) {
        free(buffer);
        snprintf(message, size, "%s", image.message);
        return 0;
    }
    *pixels = buffer;
    *width = (int)image.width;
    *height = (int)image.height;
    return 1;
}

/// `channels` is 1 (grey), 3 (RGB) or 4 (RGBA); rows are `width * channels` bytes.
static inline int ddp_png_write(const char *path, const unsigned char *pixels, int width, int height, int channels,
                                char *message, size_t size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = channels == 1 ? PNG_FORMAT_GRAY : channels == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&image, path, 0, pixels, 0, NULL)) {
        snprintf(message, size, "%s", image.message);
        return 0;
    }
    return 1;
}

struct ddp_jpeg_error {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void ddp_jpeg_error_exit(j_common_ptr info) {
    struct ddp_jpeg_error *error = (struct ddp_jpeg_error *)info->err;
    (*info->err->format_message)(info, error->message);
    longjmp(error->jump, 1);
}

/// Warnings (level -1: corrupt or truncated data, which libjpeg would paper over with grey) are
/// kept to fail the read; trace messages are dropped instead of printed to stderr.
static void ddp_jpeg_emit_message(j_common_ptr info, int level) {
    if (level >= 0) return;
    struct ddp_jpeg_error *error = (struct ddp_jpeg_error *)info->err;
    (*info->err->format_message)(info, error->message);
    info->err->num_warnings++;
}

static inline int ddp_jpeg_read(const char *path, unsigned char **pixels, int *width, int *height,
                                char *message, size_t size) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        snprintf(message, size, "%s", strerror(errno));
        return 0;
    }
    struct jpeg_decompress_struct info;
    struct ddp_jpeg_error error;
    memset(&info, 0, sizeof info);
    unsigned char *volatile buffer = NULL;
    info.err = jpeg_std_error(&error.manager);
    error.manager.error_exit = ddp_jpeg_error_exit;
    error.manager.emit_message = ddp_jpeg_emit_message;
    error.message[0] = 0;
    if (setjmp(error.jump)) {
        jpeg_destroy_decompress(&info);
        fclose(file);
        free(buffer);
        snprintf(message, size, "%s", error.message);
        return 0;
    }
    jpeg_create_decompress(&info);
    jpeg_stdio_src(&info, file);
    jpeg_read_header(&info, TRUE);
    info.out_color_space = JCS_RGB;  // from YCbCr or grey; CMYK is refused by libjpeg
    jpeg_start_decompress(&info);
    if (ddp_too_large(info.output_width, info.output_height, error.message, sizeof error.message)) {
        longjmp(error.jump, 1);
    }
    size_t stride = (size_t)info.output_width * 3;
    buffer = malloc(stride * info.output_height);
    if (buffer == NULL) {
        snprintf(error.message, sizeof error.message, "out of memory for %ux%u pixels", info.output_width, info.output_height);
        longjmp(error.jump, 1);
    }
    while (info.output_scanline < info.output_height) {
        JSAMPROW row = buffer + info.output_scanline * stride;
        jpeg_read_scanlines(&info, &row, 1);
    }
    jpeg_finish_decompress(&info);
    if (error.manager.num_warnings > 0) longjmp(error.jump, 1);  // error.message holds the last warning
    *pixels = buffer;
    *width = (int)info.output_width;
    *height = (int)info.output_height;
    jpeg_destroy_decompress(&info);
    fclose(file);
    return 1;
}
