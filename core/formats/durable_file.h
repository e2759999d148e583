/* Publishing a file so that a crash never leaves a half-written one under its final
 * name: the finished temporary file is fsync'ed, renamed over the final name, and the
 * directory is fsync'ed so the rename itself is durable. Checkpoints and dataset
 * shards both commit this way. */
#pragma once
#include "core/status.h"

/* kind names the file's role in messages ("checkpoint", "shard"). */
t2s_status t2s_durable_rename(const char *tmp_path, const char *final_path, const char *kind,
                              t2s_error *err);

/* Whether the writer of a temporary file "<final>.tmp.<pid>" is gone, so that its file
 * can only be debris: no process `pid` exists (kill(pid, 0) fails with ESRCH), or it
 * is a zombie (state Z or X in /proc/<pid>/stat): killed, not yet reaped by its
 * parent, and never writing again. A live pid, even one the kernel reused, counts as
 * not gone, so a running writer's file is never removed. pid <= 0: not gone. */
int t2s_writer_pid_gone(long pid);
