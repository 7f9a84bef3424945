// The caller field of a log line names the line that logged, not common/log.h (the
// SourceLocation default arguments are filled at the call site, with gcc and clang alike).
#include <sstream>
#include <string>

#include "common/log.h"
#include "gtest/gtest.h"

namespace strata {
namespace {

class LogCallerTest : public ::testing::Test {
 protected:
  void TearDown() override { ConfigureLogging(LogLevel::kInfo, LogFormat::kText, nullptr); }
  std::ostringstream out_;
};

TEST_F(LogCallerTest, TextLineNamesTheCallSite) {
  ConfigureLogging(LogLevel::kInfo, LogFormat::kText, &out_);
  LogWarning("hello", {{"k", "v"}});
  const int line = __LINE__ - 1;
  EXPECT_NE(out_.str().find(" log_caller_test.cc:" + std::to_string(line) + "] \"hello\" k=\"v\""),
            std::string::npos)
      << out_.str();
}

TEST_F(LogCallerTest, JsonCallerNamesTheCallSite) {
  ConfigureLogging(LogLevel::kDebug, LogFormat::kJson, &out_);
  LogDebug("one");
  const int line = __LINE__ - 1;
  EXPECT_NE(out_.str().find("\"caller\":\"log_caller_test.cc:" + std::to_string(line) + "\""),
            std::string::npos)
      << out_.str();
}

// Through a function pointer the default is lost; the caller passes its own location.
TEST_F(LogCallerTest, ExplicitLocationThroughAFunctionPointer) {
  ConfigureLogging(LogLevel::kInfo, LogFormat::kText, &out_);
  auto log = LogError;
  log("two", {}, SourceLocation::current());
  const int line = __LINE__ - 1;
  EXPECT_NE(out_.str().find("log_caller_test.cc:" + std::to_string(line) + "]"), std::string::npos)
      << out_.str();
}

}  // namespace
}  // namespace strata
