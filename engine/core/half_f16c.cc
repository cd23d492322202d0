// fp16 -> fp32 widening with F16C's vcvtph2ps. This translation unit is compiled with -mf16c
// -mavx (engine/CMakeLists.txt) and entered only after a run-time CPU check
// (formats/types.cc), so a portable build keeps F16C speed for f16 rows. It includes no inline
// code of the project (half.h's inline functions compiled here with AVX encodings could be
// picked by the linker for every caller).
#include <immintrin.h>

#include <cstdint>

namespace qbench {

void fp16_to_fp32_row_f16c(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) {
    const uint16_t h = uint16_t(src[2 * i] | (src[2 * i + 1] << 8));
    dst[i] = _cvtsh_ss(h);
  }
}

}  // namespace qbench
