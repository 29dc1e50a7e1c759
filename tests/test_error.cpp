// require(): an Error with the message on a failed check; the lazy form builds its message only
// then (the per-token checks of every batch use it).
#include <gtest/gtest.h>

#include "core/error.h"

using pricer::Error;
using pricer::require;

TEST(Require, ThrowsTheMessageOnlyWhenTheCheckFails) {
  EXPECT_NO_THROW(require(true, "never shown"));
  try {
    require(false, std::string("token 7 outside the vocabulary"));
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "token 7 outside the vocabulary");
  }
}

TEST(Require, TheLazyFormBuildsItsMessageOnlyOnFailure) {
  int built = 0;
  auto message = [&] {
    ++built;
    return std::string("row ") + std::to_string(built);
  };
  for (int i = 0; i < 1000; ++i) require(i >= 0, message);
  EXPECT_EQ(built, 0);
  try {
    require(false, message);
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "row 1");
  }
  EXPECT_EQ(built, 1);
}
