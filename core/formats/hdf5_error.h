/* Turning a failed HDF5 call into a sentence: which kind of file, which file, which
 * call on which object, and HDF5's own innermost reason ("truncated file",
 * "errno = 2"), with a hint for the file-locking failures of network filesystems. */
#pragma once
#include <stddef.h>

#include "core/status.h"

/* Call right after the failing HDF5 call: the next API call clears HDF5's error stack.
 * kind names the file's role in the message ("checkpoint", "shard"). */
/* HDF5's innermost reason for the last failure into buf ("no detail" when none). */
void t2s_h5_detail(char *buf, size_t size);
t2s_status t2s_h5_fail(t2s_error *err, const char *kind, const char *file, const char *call,
                       const char *object);
