#!/usr/bin/env bash
# Downloads the official CIFAR-10 binary archive, verifies its MD5 (as published on the
# data set's page) and unpacks it into DEST (default: data/), giving data/cifar-10-batches-bin/.
# Usage: cluster/fetch-cifar10.sh [DEST]
set -euo pipefail
dest="${1:-data}"
url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
md5="c32a1d4ab5d03f1284b67883e8d87530"
mkdir -p "$dest"
archive="$dest/cifar-10-binary.tar.gz"
if [ -f "$dest/cifar-10-batches-bin/data_batch_1.bin" ]; then
    echo "already present: $dest/cifar-10-batches-bin"
    exit 0
fi
if ! [ -f "$archive" ]; then
    echo "downloading $url"
    if ! curl -fL --connect-timeout 20 --retry 2 -o "$archive.part" "$url"; then
        rm -f "$archive.part"
        echo "fetch-cifar10: download failed (no network?). Copy cifar-10-binary.tar.gz into $dest/ by hand and rerun," >&2
        echo "or try ddptrain without it: .build/release/ddptrain synth --out data/synthetic" >&2
        exit 1
    fi
    mv "$archive.part" "$archive"
fi
got=$(md5sum "$archive" | cut -d' ' -f1)
if [ "$got" != "$md5" ]; then
    echo "fetch-cifar10: checksum mismatch for $archive: got $got, expected $md5; deleting it" >&2
    rm -f "$archive"
    exit 1
fi
tar -xzf "$archive" -C "$dest"
echo "CIFAR-10 ready in $dest/cifar-10-batches-bin (use --data $dest/cifar-10-batches-bin or export CIFAR10_DIR)"
