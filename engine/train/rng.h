// Training draws from the project's one generator (engine/core/rng.h).
#pragma once

#include "engine/core/rng.h"

namespace qbench::train {
using qbench::Rng;
using qbench::splitmix64;
}  // namespace qbench::train
