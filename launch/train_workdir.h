/* The files of a training work_dir at start-up: whether it already holds a run (a
 * fresh start there would mix two runs' checkpoints and metrics), which checkpoint
 * --resume auto takes and why a newer one was passed over, and metrics.jsonl cut back
 * to the resumed iteration so that no iteration appears twice. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

/* T2S_ERR_INVALID when work_dir holds latest.h5, an iter_*.h5 or a non-empty
 * metrics.jsonl; the message names what was found and offers --resume auto and
 * --overwrite. */
t2s_status t2s_workdir_check_fresh(const char *work_dir, t2s_error *err);

/* Removes what writers killed mid-write left in work_dir: `<name>.tmp.<pid>` (checkpoints),
 * `.latest.<pid>` (the latest.h5 link) and `.metrics.jsonl.<pid>` (the metrics cut-back),
 * when process <pid> no longer exists or is a zombie not yet reaped (t2s_writer_pid_gone;
 * a live pid, even a reused one, is left alone).
 * Says on `log` (may be NULL) what it removed; returns the count. Rank 0, at start. */
int t2s_workdir_remove_stale(const char *work_dir, FILE *log);

/* The newest checkpoint of work_dir that opens: the highest iter_*.h5 that opens when
 * it is newer than latest.h5 (a run killed before it re-pointed the link), else
 * latest.h5, else the highest iter_*.h5 that opens. Returns 1 with `path` set, 0 (path "") when there is none. `why` (may be
 * NULL) receives, when a newer file was passed over, which file and the reader's
 * reason, else "". */
int t2s_workdir_find_resume(const char *work_dir, char *path, size_t size, char *why, size_t why_size);

/* Opens work_dir/metrics.jsonl for appending. fresh: truncated to empty. Otherwise the
 * lines of iterations after `resume_iter` (logged by a run that went on past the
 * checkpoint it is resumed from, or that died before its next checkpoint) are removed,
 * through a temporary file renamed over the original; *dropped receives their count. */
t2s_status t2s_workdir_open_metrics(const char *work_dir, int fresh, int64_t resume_iter, FILE **out,
                                    int64_t *dropped, t2s_error *err);
