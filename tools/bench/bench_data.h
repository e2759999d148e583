/* `t2sda_bench data`: throughput of the prefetching loader (data/loader.h).
 *
 *   t2sda_bench data [--shards GLOB] [--crop W H] [--batch B] [--iters N] [--warmup N]
 *                    [--threads 1,2] [--rare-class] [--no-labels]
 *
 * For each thread count (0 = loading in the caller's thread), opens a loader on the
 * shards and times `iters` batches after `warmup`, the consumer doing nothing else:
 * the images/s printed is what the loader can feed at most. A one-thread pass also
 * splits the time per sample into the locked chunk read, the inflate and the
 * augmentation. Without --shards it draws 64 synthetic 1280x720 images into
 * /tmp/t2sda_bench_data once (4 shards) and reuses them on later runs. */
#pragma once

/* argv[0] is the subcommand ("data"); options follow. Returns the exit code. */
int t2s_bench_data(int argc, char **argv);
