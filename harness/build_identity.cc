#include "harness/build_identity.h"

#include "harness/build_identity_generated.h"

namespace qbench {
using json = nlohmann::json;
namespace g = build_generated;

const json& build_identity() {
  static const json id = {{"git_commit", g::kGitCommit},
                          {"git_dirty", g::kGitDirty},
                          {"toolchain", g::kToolchain},
                          {"modules",
                           {{"build", g::kHashBuild},
                            {"engine", g::kHashEngine},
                            {"quantizers", g::kHashQuantizers},
                            {"tasks", g::kHashTasks},
                            {"datasets", g::kHashDatasets},
                            {"measure", g::kHashMeasure},
                            {"harness", g::kHashHarness}}}};
  return id;
}

json measurement_identity(MeasurementKind kind) {
  const json& m = build_identity()["modules"];
  json out = {{"toolchain", g::kToolchain}, {"build", m["build"]}, {"engine", m["engine"]},
              {"quantizers", m["quantizers"]}, {"measure", m["measure"]}};
  if (kind == MeasurementKind::Quality) {
    out["tasks"] = m["tasks"];
    out["datasets"] = m["datasets"];
  }
  return out;
}

std::string build_label() { return std::string(g::kGitCommit) + (g::kGitDirty ? "-dirty" : ""); }

}  // namespace qbench
