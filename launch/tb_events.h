/* TensorBoard event files without TensorFlow: scalars as TensorBoard reads them.
 *
 * A file DIR/events.out.tfevents.<unix time>.<host>.<pid> is a sequence of
 * TFRecords, each
 *     uint64 length (little-endian), uint32 masked CRC32C of those 8 bytes,
 *     length bytes of data,          uint32 masked CRC32C of the data
 * (masked crc = ((crc >> 15) | (crc << 17)) + 0xa282ead8), whose data is one
 * serialized tensorflow.Event protobuf, encoded here by hand:
 *     Event   { double wall_time = 1; int64 step = 2; string file_version = 3;
 *               Summary summary = 5; }
 *     Summary { repeated Value value = 1; }
 *     Value   { string tag = 1; float simple_value = 2; }
 * The first record carries file_version "brain.Event:2", as TensorFlow writes.
 *
 * The trainer mirrors metrics.jsonl (t2s_tb_follow): each line appended to it
 * becomes one event per numeric key at step "iteration" ("loss", "mIoU",
 * "IoU.road", ...), so the two files always hold the same numbers. */
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

typedef struct t2s_tb_writer t2s_tb_writer;

/* CRC-32C (Castagnoli), as TFRecord uses it, and its masked form. */
uint32_t t2s_crc32c(const void *data, size_t n);
uint32_t t2s_crc32c_masked(const void *data, size_t n);

/* Creates a new event file in dir (never replaces one) and writes the
 * file_version record. NULL and err set on failure. */
t2s_tb_writer *t2s_tb_open(const char *dir, t2s_error *err);
const char *t2s_tb_path(const t2s_tb_writer *w);
/* One scalar event; wall_time in seconds since the epoch. */
t2s_status t2s_tb_scalar(t2s_tb_writer *w, const char *tag, int64_t step, double wall_time,
                         float value, t2s_error *err);
/* Flushes to the operating system (TensorBoard reads files while they grow). */
t2s_status t2s_tb_flush(t2s_tb_writer *w, t2s_error *err);
void t2s_tb_close(t2s_tb_writer *w);

/* A writer beside a JSON-lines metrics file that mirrors what is appended to it
 * from now on (lines already in the file, e.g. of the run being resumed, are in
 * the earlier event files). */
t2s_tb_writer *t2s_tb_follow(const char *jsonl_path, t2s_error *err);
/* Writes the complete lines appended since the last call: one event per numeric
 * key of each flat JSON object, at step = its "iteration". */
t2s_status t2s_tb_sync(t2s_tb_writer *w, t2s_error *err);
/* For the trainer: syncs; on failure writes one warning to `warn` and closes the
 * writer (*w = NULL), since TensorBoard output must never stop a run. */
void t2s_tb_sync_or_drop(t2s_tb_writer **w, FILE *warn);
