// LD_PRELOAD probe: prints every exp(x) a program computes in double for 0.5 < x < 10 with all
// digits. llama-perplexity prints its running and final PPL as exp(mean NLL) with 4 decimals; the
// last "probe: exp" line is the final PPL to 17 digits. (ggml itself uses expf, not exp.)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

double exp(double x) {
  static double (*real)(double);
  if (!real) real = (double (*)(double))dlsym(RTLD_NEXT, "exp");
  const double r = real(x);
  if (x > 0.5 && x < 10) fprintf(stderr, "probe: exp %.17g = %.17g\n", x, r);
  return r;
}
