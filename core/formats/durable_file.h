/* Publishing a file so that a crash never leaves a half-written one under its final
 * name: the finished temporary file is fsync'ed, renamed over the final name, and the
 * directory is fsync'ed so the rename itself is durable. Checkpoints and dataset
 * shards both commit this way. */
#pragma once
#include "core/status.h"

/* kind names the file's role in messages ("checkpoint", "shard"). */
t2s_status t2s_durable_rename(const char *tmp_path, const char *final_path, const char *kind,
                              t2s_error *err);
