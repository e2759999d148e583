/* Every public op call, one header per op family (core/ops/<family>.h: its argument
 * structs, shared by core/ops/<family>.c and core/cuda/<family>.cu, and its calls).
 * Each call builds its output in the pass arena, runs the op through the descriptor
 * table (core/engine.h) and returns the output, or NULL with ctx->err set.
 * Activations are (N, C, H, W) logically. Inputs that do not need gradients
 * (labels, weights, constant masks) have requires_grad = 0. */
#pragma once
#include "core/ops/attention.h"
#include "core/ops/batch_norm.h"
#include "core/ops/conv2d.h"
#include "core/ops/cross_entropy.h"
#include "core/ops/drop_path.h"
#include "core/ops/elementwise.h"
#include "core/ops/hrda.h"
#include "core/ops/linear.h"
#include "core/ops/norm.h"
#include "core/ops/permute.h"
#include "core/ops/pool.h"
#include "core/ops/resize.h"
#include "core/ops/shape.h"
