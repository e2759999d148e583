#include "core/nn/resnet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

t2s_resnet_cfg t2s_resnet_default_cfg(int depth) {
  t2s_resnet_cfg c = {depth, 64, 64, {1, 2, 1, 1}, {1, 1, 2, 4}, 1, T2S_NORM_BN, 0};
  return c;
}

static int stage_blocks(int depth, int counts[4], int *bottleneck) {
  static const struct { int depth, bottleneck, blocks[4]; } table[] = {
      {18, 0, {2, 2, 2, 2}},  {34, 0, {3, 4, 6, 3}},   {50, 1, {3, 4, 6, 3}},
      {101, 1, {3, 4, 23, 3}}, {152, 1, {3, 8, 36, 3}},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (table[i].depth == depth) {
      memcpy(counts, table[i].blocks, sizeof table[i].blocks);
      *bottleneck = table[i].bottleneck;
      return 1;
    }
  return 0;
}

static t2s_status build_block(t2s_resnet_block *b, t2s_params *p, const char *name, int bottleneck,
                              int64_t inplanes, int64_t planes, int stride, int dil, int downsample,
                              const t2s_resnet_cfg *cfg, t2s_error *err) {
  char n[160];
  t2s_status st = T2S_OK;
  const t2s_init ki = T2S_INIT_KAIMING_FAN_OUT;
  b->bottleneck = bottleneck;
#define SUB(fmt) (snprintf(n, sizeof n, "%s." fmt, name), n)
  if (bottleneck) {
    int64_t out = planes * 4;
    if (!st) st = t2s_conv_build(&b->conv1, p, SUB("conv1"), inplanes, planes, 1, 1, 0, 1, 1, 0, ki, 0, err);
    if (!st) st = t2s_bn_build(&b->bn1, p, SUB("bn1"), planes, cfg->norm, cfg->norm_eval, err);
    if (!st) st = t2s_conv_build(&b->conv2, p, SUB("conv2"), planes, planes, 3, stride, dil, dil, 1, 0, ki, 0, err);
    if (!st) st = t2s_bn_build(&b->bn2, p, SUB("bn2"), planes, cfg->norm, cfg->norm_eval, err);
    if (!st) st = t2s_conv_build(&b->conv3, p, SUB("conv3"), planes, out, 1, 1, 0, 1, 1, 0, ki, 0, err);
    if (!st) st = t2s_bn_build(&b->bn3, p, SUB("bn3"), out, cfg->norm, cfg->norm_eval, err);
    planes = out;
  } else {
    if (!st) st = t2s_conv_build(&b->conv1, p, SUB("conv1"), inplanes, planes, 3, stride, dil, dil, 1, 0, ki, 0, err);
    if (!st) st = t2s_bn_build(&b->bn1, p, SUB("bn1"), planes, cfg->norm, cfg->norm_eval, err);
    /* mmseg's BasicBlock: only conv1 is dilated; conv2 is a plain 3x3 */
    if (!st) st = t2s_conv_build(&b->conv2, p, SUB("conv2"), planes, planes, 3, 1, 1, 1, 1, 0, ki, 0, err);
    if (!st) st = t2s_bn_build(&b->bn2, p, SUB("bn2"), planes, cfg->norm, cfg->norm_eval, err);
  }
  b->has_downsample = downsample;
  if (downsample) {
    if (!st) st = t2s_conv_build(&b->down, p, SUB("downsample.0"), inplanes, planes, 1, stride, 0, 1, 1, 0, ki, 0, err);
    if (!st) st = t2s_bn_build(&b->down_bn, p, SUB("downsample.1"), planes, cfg->norm, cfg->norm_eval, err);
  }
#undef SUB
  return st;
}

t2s_status t2s_resnet_build(t2s_resnet *net, t2s_params *p, const char *prefix,
                            const t2s_resnet_cfg *cfg, t2s_error *err) {
  memset(net, 0, sizeof *net);
  net->cfg = *cfg;
  int bottleneck = 0;
  if (!stage_blocks(cfg->depth, net->n_blocks, &bottleneck))
    return t2s_error_set(err, T2S_ERR_INVALID,
                         "model.backbone.depth: %d is not a ResNet depth (use 18, 34, 50, 101 or 152)",
                         cfg->depth);
  for (int i = 0; i < 4; i++)
    if (cfg->strides[i] < 1 || cfg->dilations[i] < 1)
      return t2s_error_set(err, T2S_ERR_INVALID, "model.backbone: stage %d has stride %d, dilation %d "
                           "(both must be >= 1)", i + 1, cfg->strides[i], cfg->dilations[i]);
  int total = net->n_blocks[0] + net->n_blocks[1] + net->n_blocks[2] + net->n_blocks[3];
  net->blocks = calloc((size_t)total, sizeof *net->blocks);
  if (net->blocks == NULL) return t2s_error_set(err, T2S_ERR_NOMEM, "out of memory building ResNet");

  char n[160];
  int64_t half = cfg->stem_channels / 2, stem_io[3][2] = {{3, half}, {half, half}, {half, cfg->stem_channels}};
  static const int stem_conv_index[3] = {0, 3, 6};
  t2s_status st = T2S_OK;
  for (int i = 0; i < 3 && !st; i++) {
    snprintf(n, sizeof n, "%s.stem.%d", prefix, stem_conv_index[i]);
    st = t2s_conv_build(&net->stem[i], p, n, stem_io[i][0], stem_io[i][1], 3, i == 0 ? 2 : 1, 1, 1, 1, 0,
                        T2S_INIT_KAIMING_FAN_OUT, 0, err);
    snprintf(n, sizeof n, "%s.stem.%d", prefix, stem_conv_index[i] + 1);
    if (!st) st = t2s_bn_build(&net->stem_bn[i], p, n, stem_io[i][1], cfg->norm, cfg->norm_eval, err);
  }
  int64_t inplanes = cfg->stem_channels;
  int k = 0;
  for (int s = 0; s < 4 && !st; s++) {
    int64_t planes = (int64_t)cfg->base_channels << s;
    int64_t expanded = bottleneck ? planes * 4 : planes;
    int dil = cfg->dilations[s];
    for (int j = 0; j < net->n_blocks[s] && !st; j++, k++) {
      int first = j == 0;
      int stride = first ? cfg->strides[s] : 1;
      int block_dil = (first && cfg->contract_dilation && dil > 1) ? dil / 2 : dil;
      int downsample = first && (stride != 1 || inplanes != expanded);
      snprintf(n, sizeof n, "%s.layer%d.%d", prefix, s + 1, j);
      st = build_block(&net->blocks[k], p, n, bottleneck, inplanes, planes, stride, block_dil,
                       downsample, cfg, err);
      inplanes = expanded;
    }
    net->out_channels[s] = expanded;
  }
  return st;
}

void t2s_resnet_free(t2s_resnet *net) {
  free(net->blocks);
  net->blocks = NULL;
}

/* One residual block in a liveness scope (core/engine.h): its intermediates go back to
 * the pass arena when it ends, except what its backward reads. */
static t2s_tensor *block_forward(t2s_ctx *ctx, const t2s_resnet_block *b, t2s_tensor *x) {
  t2s_scope scope = t2s_scope_begin(ctx);
  t2s_tensor *h = t2s_conv_bn_act(ctx, &b->conv1, &b->bn1, x, 1);
  if (b->bottleneck) {
    h = t2s_conv_bn_act(ctx, &b->conv2, &b->bn2, h, 1);
    h = t2s_conv_bn_act(ctx, &b->conv3, &b->bn3, h, 0);
  } else {
    h = t2s_conv_bn_act(ctx, &b->conv2, &b->bn2, h, 0);
  }
  t2s_tensor *identity = b->has_downsample ? t2s_conv_bn_act(ctx, &b->down, &b->down_bn, x, 0) : x;
  t2s_tensor *y = t2s_relu(ctx, t2s_add(ctx, h, identity));
  t2s_scope_end(ctx, scope, &y, 1);
  return y;
}

t2s_status t2s_resnet_forward(t2s_ctx *ctx, const t2s_resnet *net, t2s_tensor *image,
                              t2s_tensor *outs[4]) {
  t2s_tensor *x = image;
  t2s_scope stem = t2s_scope_begin(ctx);
  for (int i = 0; i < 3; i++) x = t2s_conv_bn_act(ctx, &net->stem[i], &net->stem_bn[i], x, 1);
  t2s_pool2d_args pool = {3, 3, 2, 2, 1, 1, 0, 1};
  x = t2s_max_pool2d(ctx, x, &pool);
  t2s_scope_end(ctx, stem, &x, 1);
  int k = 0;
  for (int s = 0; s < 4; s++) {
    for (int j = 0; j < net->n_blocks[s]; j++, k++) x = block_forward(ctx, &net->blocks[k], x);
    outs[s] = x;
  }
  return ctx->err.status;
}
