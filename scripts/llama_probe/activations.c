// LD_PRELOAD probe for llama.cpp's CPU backend (libggml-cpu): checks the bytes ggml writes when it
// quantizes a matmul's activations against the rule qbench implements (engine/kernels/quant_dot.cc,
// ggml's x86 rule: d = max|x| / 127 as fp16, q = round_half_even(x * (127 / max|x|)), Q8_1's
// s = fp16(d * sum q)) and against ggml's own scalar quantize_row_q8_*_ref, and counts the rows
// ggml converts to fp16 for F16 matrices (their vec_dot_type). Prints the counts at exit.
// Works because libggml-cpu reaches these exported functions through its type-traits table or
// the PLT, so the preloaded definitions win. Build and use: see README.md.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*row_fn)(const float*, void*, int64_t);

enum { Q8_0, Q8_1, MAT_4X8, N_KINDS };
static const char* kind_name[N_KINDS] = {"quantize_row_q8_0", "quantize_row_q8_1", "ggml_quantize_mat_q8_0_4x8"};
static long calls[N_KINDS], values[N_KINDS], diff_rule[N_KINDS], diff_ref[N_KINDS];
static long fp16_rows, fp16_values;

static void report(void) {
  for (int k = 0; k < N_KINDS; ++k) {
    if (calls[k] == 0) continue;
    fprintf(stderr, "probe: %s: %ld calls, %ld values; bytes differing from the x86 rule %ld, from ggml's _ref %ld\n",
            kind_name[k], calls[k], values[k], diff_rule[k], diff_ref[k]);
  }
  if (fp16_rows) fprintf(stderr, "probe: ggml_cpu_fp32_to_fp16: %ld calls, %ld values\n", fp16_rows, fp16_values);
}

static void init(void) {
  static int done;
  if (!done) {
    done = 1;
    atexit(report);
  }
}

// One 32-value block by the x86 rule into `out` (34 bytes for Q8_0: d, qs; 36 for Q8_1: d, s, qs).
static void rule_block(const float* x, uint8_t* out, int with_sum) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(x[j]));
  const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
  const uint16_t dh = _cvtss_sh(d, 0);
  memcpy(out, &dh, 2);
  int8_t* q = (int8_t*)(out + (with_sum ? 4 : 2));
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    q[j] = (int8_t)nearbyintf(x[j] * id);
    sum += q[j];
  }
  if (with_sum) {
    const uint16_t sh = _cvtss_sh(d * (float)sum, 0);
    memcpy(out + 2, &sh, 2);
  }
}

static long count_diff(const uint8_t* a, const uint8_t* b, size_t n) {
  long c = 0;
  for (size_t i = 0; i < n; ++i) c += a[i] != b[i];
  return c;
}

static void check_rows(int kind, const char* ref_name, int with_sum, const float* x, const uint8_t* got, int64_t n) {
  static row_fn refs[N_KINDS];
  if (!refs[kind]) refs[kind] = (row_fn)dlsym(RTLD_DEFAULT, ref_name);
  const size_t bsz = with_sum ? 36 : 34, nb = (size_t)n / 32;
  uint8_t* ref = malloc(nb * bsz);
  refs[kind](x, ref, n);
  uint8_t blk[36];
  for (size_t b = 0; b < nb; ++b) {
    rule_block(x + 32 * b, blk, with_sum);
    diff_rule[kind] += count_diff(blk, got + b * bsz, bsz);
  }
  diff_ref[kind] += count_diff(ref, got, nb * bsz);
  free(ref);
  calls[kind]++;
  values[kind] += n;
}

void quantize_row_q8_0(const float* x, void* y, int64_t n) {
  static row_fn real;
  init();
  if (!real) real = (row_fn)dlsym(RTLD_NEXT, "quantize_row_q8_0");
  real(x, y, n);
  check_rows(Q8_0, "quantize_row_q8_0_ref", 0, x, y, n);
}

void quantize_row_q8_1(const float* x, void* y, int64_t n) {
  static row_fn real;
  init();
  if (!real) real = (row_fn)dlsym(RTLD_NEXT, "quantize_row_q8_1");
  real(x, y, n);
  check_rows(Q8_1, "quantize_row_q8_1_ref", 1, x, y, n);
}

// The repacked-weight path: 4 rows of n values (row stride n) into n / 32 blocks of
// {fp16 d[4]; int8 qs[128]}, the quants interleaved in 8-byte groups (group g holds row g % 4,
// values 8 * (g / 4) .. + 8). De-interleaved and compared row by row.
void ggml_quantize_mat_q8_0_4x8(const float* x, void* vy, int64_t n) {
  static row_fn real, ref;
  init();
  if (!real) {
    real = (row_fn)dlsym(RTLD_NEXT, "ggml_quantize_mat_q8_0_4x8");
    ref = (row_fn)dlsym(RTLD_DEFAULT, "quantize_row_q8_0_ref");
  }
  real(x, vy, n);
  const uint8_t* y = vy;
  const int64_t nb = n / 32;
  uint8_t* rref = malloc((size_t)nb * 34);
  for (int r = 0; r < 4; ++r) {
    ref(x + r * n, rref, n);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = y + b * (8 + 128);
      uint8_t got[34], want[34];
      memcpy(got, blk + 2 * r, 2);
      for (int g = r; g < 16; g += 4) memcpy(got + 2 + (g / 4) * 8, blk + 8 + g * 8, 8);
      rule_block(x + r * n + 32 * b, want, 0);
      diff_rule[MAT_4X8] += count_diff(got, want, 34);
      diff_ref[MAT_4X8] += count_diff(got, rref + b * 34, 34);
    }
  }
  free(rref);
  calls[MAT_4X8]++;
  values[MAT_4X8] += 4 * n;
}

void ggml_cpu_fp32_to_fp16(const float* x, uint16_t* y, int64_t n) {
  typedef void (*fn)(const float*, uint16_t*, int64_t);
  static fn real;
  init();
  if (!real) real = (fn)dlsym(RTLD_NEXT, "ggml_cpu_fp32_to_fp16");
  real(x, y, n);
  fp16_rows++;
  fp16_values += n;
}
