// What built this binary, so that every number can be traced to the code that produced it and a
// cache never reuses a number measured by other code. Computed at build time by
// harness/build_identity.cmake: the git commit (with a dirty flag: tracked sources differ from
// it), the toolchain and options, and a sha256 per module over its sources. A result's cache key
// includes the hashes of the modules that produced it (measurement_identity), so a change to the
// report code does not re-measure anything, while a change to a kernel re-measures every unit.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace qbench {

enum class MeasurementKind { Quality, Speed };

// {"git_commit", "git_dirty", "toolchain", "modules": {"engine": sha256, ...}}
const nlohmann::json& build_identity();
// The part of build_identity() that a measurement of `kind` depends on: the toolchain and the
// hashes of the modules whose code computes it (quality: engine, quantizers, tasks, datasets and
// the harness's measuring code; speed: engine, quantizers and the harness's measuring code).
nlohmann::json measurement_identity(MeasurementKind kind);
// "abc123def456" or "abc123def456-dirty".
std::string build_label();

}  // namespace qbench
