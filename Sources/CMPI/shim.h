#pragma once
#include <mpi.h>

// Open MPI defines its predefined handles as macros over globals of incomplete type,
// which Swift cannot import. These functions hand them over as plain values.
static inline MPI_Comm     ddp_comm_world(void)     { return MPI_COMM_WORLD; }
static inline MPI_Datatype ddp_float(void)          { return MPI_FLOAT; }
static inline MPI_Datatype ddp_double(void)         { return MPI_DOUBLE; }
static inline MPI_Datatype ddp_int64(void)          { return MPI_INT64_T; }
static inline MPI_Datatype ddp_int32(void)          { return MPI_INT32_T; }
static inline MPI_Datatype ddp_byte(void)           { return MPI_BYTE; }
static inline MPI_Datatype ddp_uint16(void)         { return MPI_UINT16_T; }
static inline MPI_Op       ddp_sum(void)            { return MPI_SUM; }
static inline MPI_Op       ddp_max(void)            { return MPI_MAX; }
static inline MPI_Op       ddp_min(void)            { return MPI_MIN; }
static inline void *       ddp_in_place(void)       { return MPI_IN_PLACE; }
static inline MPI_Errhandler ddp_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Request  ddp_request_null(void)   { return MPI_REQUEST_NULL; }
static inline MPI_Status * ddp_statuses_ignore(void) { return MPI_STATUSES_IGNORE; }
static inline MPI_Status * ddp_status_ignore(void)   { return MPI_STATUS_IGNORE; }
