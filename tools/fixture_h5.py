"""Writing reproducible HDF5 fixtures (shared by the make_*_fixture.py scripts).

A file's bytes depend only on its contents: no modification times on any object, and
the HDF5 1.10 format, whose single-chunk datasets need no chunk B-tree (about half the
per-dataset overhead of the many small tensors a fixture holds). Regenerating an
unchanged fixture therefore leaves git nothing to commit.
"""
import h5py
import numpy as np

COMPRESSION = dict(compression="gzip", compression_opts=9, shuffle=True, track_times=False)


def create_file(path, groups):
    """A new file at path with the top-level groups named in `groups`."""
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    f = h5py.File(h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    for name in groups:
        h5py.h5g.create(f.id, name.encode(), gcpl=gcpl)
    return f


def put(group, name, tensor):
    """One named tensor as a dataset: float64 stored as float32, other dtypes kept."""
    arr = tensor.detach().cpu().numpy()
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    if arr.ndim == 0:
        return group.create_dataset(name, data=arr, track_times=False)
    return group.create_dataset(name, data=arr, **COMPRESSION)
