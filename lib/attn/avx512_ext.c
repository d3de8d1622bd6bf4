/* The AVX-512 kernel again, with the VNNI and BF16 extensions enabled
 * (ISA_FLAGS_avx512_ext): Q8 dot products by vpdpwssd and bf16 ones by
 * vdpbf16ps (attn/avx512_ext.h), everything else as in avx512.c. The
 * dispatcher runs these entry points only when cpuid lists VNNI (and BF16
 * for kvc__attn_avx512_bf16). */
#define KVC__AVX512_EXT 1
#include "attn/avx512.c"
