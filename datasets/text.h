// Plain text inputs (perplexity corpora, calibration text): read_text_file lives in engine
// (engine/core/utf8.h) so that the quantizers' calibration reads text with the same checks.
#pragma once

#include "engine/core/utf8.h"
