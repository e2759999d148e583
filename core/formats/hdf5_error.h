/* Turning a failed HDF5 call into a sentence: which kind of file, which file, which
 * call on which object, and HDF5's own innermost reason ("truncated file",
 * "errno = 2"), with a hint for the file-locking failures of network filesystems. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Call right after the failing HDF5 call: the next API call clears HDF5's error stack.
 * kind names the file's role in the message ("checkpoint", "shard"). */
/* HDF5's innermost reason for the last failure into buf ("no detail" when none). */
void t2s_h5_detail(char *buf, size_t size);
t2s_status t2s_h5_fail(t2s_error *err, const char *kind, const char *file, const char *call,
                       const char *object);

/* H5Fclose that records a failure. HDF5 1.10 leaves a file id whose close failed
 * (a full disk during the final flush) half destroyed: touching it again, as the
 * library's own atexit shutdown does, crashes the process (SIGSEGV after the
 * error was already reported). So this module replaces HDF5's atexit hook by one
 * that runs H5close only while no file close has failed; the OS then releases the
 * poisoned file at exit. Use it for every H5Fclose. */
int t2s_h5_close_file(int64_t file_id); /* H5Fclose's result: < 0 on failure */
