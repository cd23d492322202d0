// Comparing two GGUF files tensor by tensor (qbench's output against llama-quantize's).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "engine/io/gguf.h"

namespace qbench::test {

// The two files hold the same tensors with the same types, shapes and bytes; the order of the
// tensor lists may differ (qbench keeps the source file's, llama-quantize writes its own).
inline void expect_same_tensors(const std::string& mine_path, const std::string& theirs_path) {
  const auto mine = gguf::File::open(mine_path);
  const auto theirs = gguf::File::open(theirs_path);
  ASSERT_EQ(mine->tensors().size(), theirs->tensors().size());
  for (const gguf::TensorInfo& b : theirs->tensors()) {
    const gguf::TensorInfo* a = mine->find_tensor(b.name);
    ASSERT_NE(a, nullptr) << b.name;
    EXPECT_EQ(a->type, b.type) << b.name;
    EXPECT_EQ(a->dims, b.dims) << b.name;
    ASSERT_EQ(a->nbytes, b.nbytes) << b.name;
    EXPECT_EQ(std::memcmp(a->data, b.data, a->nbytes), 0) << b.name << " differs";
  }
}

}  // namespace qbench::test
