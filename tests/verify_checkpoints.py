#!/usr/bin/env python3
"""Checks every checkpoint of a work_dir under a final name (iter_*.h5, latest.h5,
best.h5) with h5py, independently of core/formats/checkpoint.c: it opens, /meta says
format t2sda-ckpt, and every dataset's bytes (C order, little-endian) match its
crc32 attribute (zlib.crc32, docs/formats.md). Exit 1 with the file and dataset of
the first failure. Used by tests/test_fault_kill.c after each kill -9.

    tests/verify_checkpoints.py WORK_DIR
"""
import glob
import os
import sys
import zlib

import h5py
import numpy as np


def verify(path):
    bad = []
    with h5py.File(path, "r") as f:
        fmt = f["meta"].attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode()
        if fmt != "t2sda-ckpt":
            return [f"/meta format is {fmt!r}"]
        count = [0]

        def visit(name, obj):
            if not isinstance(obj, h5py.Dataset):
                return
            count[0] += 1
            if "crc32" not in obj.attrs:
                bad.append(f"/{name} has no crc32 attribute")
                return
            data = np.ascontiguousarray(obj[()])
            data = data.astype(data.dtype.newbyteorder("<"), copy=False)
            if zlib.crc32(data.tobytes()) != int(obj.attrs["crc32"]):
                bad.append(f"/{name} does not match its crc32")

        f.visititems(visit)
        if count[0] == 0:
            bad.append("no datasets")
    return bad


def main():
    work_dir = sys.argv[1]
    names = sorted(glob.glob(os.path.join(work_dir, "iter_*.h5")))
    names += [p for p in (os.path.join(work_dir, n) for n in ("latest.h5", "best.h5")) if os.path.lexists(p)]
    failed = 0
    for path in names:
        try:
            bad = verify(path)
        except Exception as e:  # an unreadable file is the finding itself
            bad = [f"cannot be read: {e}"]
        for b in bad:
            print(f"{path}: {b}")
        failed += bool(bad)
        if not bad:
            print(f"{path}: ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
