#!/usr/bin/python3
"""Interoperability of dataset shards with h5py (called by tests/test_shard.c).

  check_shard_h5py.py check SHARD N H W C LEVEL   reads a shard written by data/shard.c
  check_shard_h5py.py write SHARD N H W C VARIANT writes one that data/shard.c must read

Both sides fill the shard with the same closed-form content, so neither needs
the other's data: pixel(i, y, x, c) = (29 i + 7 y + 13 x + 101 c) mod 256,
label(i, y, x) = (i + 3 y + x) mod (C + 1) with the value C stored as 255
(ignore), name(i) = "img_%03d" % i, domain "h5py-test", split "val".
Our writer's /orig_size (int32 N x 2, [H, W] before any resize) is [H, W] for every
image (no resize). VARIANT "plain" uses one gzip chunk per image (the direct-read
path of the C reader) and writes /orig_size = [2 H + i, 3 W]; "other" uses
shuffle+gzip, h5py's automatic chunks and fixed-length byte strings (the C
reader's general path) and no /orig_size (a shard from before it existed).
"""
import sys
import zlib

import h5py
import numpy as np

FORMAT = "t2sda-shard"


def expected(n, h, w, c):
    i, y, x = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), indexing="ij")
    ch = np.arange(3).reshape(1, 1, 1, 3)
    image = (29 * i[..., None] + 7 * y[..., None] + 13 * x[..., None] + 101 * ch) % 256
    label = (i + 3 * y + x) % (c + 1)
    label[label == c] = 255
    counts = np.stack([(label == k).sum(axis=(1, 2)) for k in range(c)], axis=1)
    names = ["img_%03d" % k for k in range(n)]
    classes = ["class_%d" % k for k in range(c)]
    return image.astype(np.uint8), label.astype(np.uint8), counts.astype(np.int64), names, classes


def as_str(v):
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def check(path, n, h, w, c, level):
    image, label, counts, names, classes = expected(n, h, w, c)
    bad = []
    with h5py.File(path, "r") as f:
        a = f.attrs
        if as_str(a["format"]) != FORMAT:
            bad.append("format %r" % a["format"])
        for key, want in (("version", 1), ("num_classes", c), ("ignore_index", 255)):
            if int(a[key]) != want:
                bad.append("%s %r != %r" % (key, a[key], want))
        if [as_str(v) for v in a["class_names"]] != classes:
            bad.append("class_names %r" % list(a["class_names"]))
        if as_str(a["domain"]) != "h5py-test" or as_str(a["split"]) != "val":
            bad.append("domain/split %r/%r" % (a["domain"], a["split"]))
        img = f["image"]
        if img.shape != (n, h, w, 3) or img.dtype != np.uint8:
            bad.append("image %r %r" % (img.shape, img.dtype))
        if img.chunks != (1, h, w, 3) or img.compression != "gzip" or img.shuffle:
            bad.append("image storage chunks=%r compression=%r shuffle=%r"
                       % (img.chunks, img.compression, img.shuffle))
        if img.compression_opts != level:
            bad.append("deflate level %r != %d" % (img.compression_opts, level))
        # the contract's promise: f["image"][i] is an H x W x 3 uint8 array
        for k in range(n):
            if not np.array_equal(img[k], image[k]):
                bad.append("image[%d] differs" % k)
        if not np.array_equal(f["label"][...], label):
            bad.append("labels differ")
        if f["label"].chunks != (1, h, w):
            bad.append("label chunks %r" % (f["label"].chunks,))
        got_names = [as_str(v) for v in f["name"][...]]
        if got_names != names:
            bad.append("names %r" % got_names)
        cp = f["class_pixels"]
        if cp.dtype != np.int64 or not np.array_equal(cp[...], counts):
            bad.append("class_pixels %r %r" % (cp.dtype, cp[...].tolist()))
        # checksums: zlib.crc32 of each image's (label's) C-order pixel bytes
        for key, want in (("image_crc32", image), ("label_crc32", label)):
            crcs = [zlib.crc32(np.ascontiguousarray(want[k]).tobytes()) for k in range(n)]
            if f[key].dtype != np.uint32 or [int(v) for v in f[key][...]] != crcs:
                bad.append("%s %r" % (key, f[key][...].tolist()))
        orig = f["orig_size"]
        if orig.dtype != np.int32 or orig.shape != (n, 2) or \
                not np.array_equal(orig[...], np.tile([h, w], (n, 1))):
            bad.append("orig_size %r %r" % (orig.dtype, orig[...].tolist()))
    if bad:
        print("h5py check of %s failed: %s" % (path, "; ".join(bad)))
        return 1
    print("h5py: %s matches (%d images %dx%d, %d classes)" % (path, n, w, h, c))
    return 0


def write(path, n, h, w, c, variant):
    image, label, counts, names, classes = expected(n, h, w, c)
    with h5py.File(path, "w") as f:
        if variant == "plain":
            f.create_dataset("image", data=image, chunks=(1, h, w, 3), compression="gzip",
                             compression_opts=2)
            f.create_dataset("label", data=label, chunks=(1, h, w), compression="gzip")
            f.create_dataset("name", data=names, dtype=h5py.string_dtype())
            f.attrs["class_names"] = classes
            f.attrs["format"] = FORMAT
            f.attrs["domain"] = "h5py-test"
            f.attrs["split"] = "val"
            orig = np.stack([2 * h + np.arange(n), np.full(n, 3 * w)], axis=1)
            f.create_dataset("orig_size", data=orig.astype(np.int32))
        else:
            f.create_dataset("image", data=image, chunks=True, compression="gzip", shuffle=True)
            f.create_dataset("label", data=label, compression="gzip", shuffle=True)
            f.create_dataset("name", data=np.array(names, dtype="S"))
            f.attrs["class_names"] = np.array(classes, dtype="S")
            f.attrs["format"] = np.bytes_(FORMAT)
            f.attrs["domain"] = np.bytes_("h5py-test")
            f.attrs["split"] = np.bytes_("val")
        f.create_dataset("class_pixels", data=counts)
        f.attrs["version"] = 1
        f.attrs["num_classes"] = c
        f.attrs["ignore_index"] = 255
    return 0


def main(argv):
    if len(argv) != 8 or argv[1] not in ("check", "write"):
        print(__doc__)
        return 2
    n, h, w, c = (int(v) for v in argv[3:7])
    if argv[1] == "check":
        return check(argv[2], n, h, w, c, int(argv[7]))
    return write(argv[2], n, h, w, c, argv[7])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
