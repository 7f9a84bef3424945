#pragma once
// Structured logging: one line per event, key="value" fields, klog-like text by default
// (`I1126 15:04:05.123456 4242 volume_manager.cc:88] "volume staged" volume="pvc-1"`)
// or one JSON object per line. Thread-safe; lines are never interleaved.
//
//   LogInfo("volume staged", {{"volume", id}, {"staging_path", path}});

#include <initializer_list>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace strata {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };
enum class LogFormat { kText, kJson };

// Where a log call was made. std::source_location would do, but clang 14 (Debian bookworm's, used
// by the sanitizer and fuzz build) cannot compile libstdc++ 12's <source_location>; gcc and clang
// both fill __builtin_FILE()/__builtin_LINE() default arguments at the outermost call site.
struct SourceLocation {
  static constexpr SourceLocation current(const char* file = __builtin_FILE(),
                                          int line = __builtin_LINE()) {
    return SourceLocation{file, line};
  }
  const char* file_name() const { return file; }
  int line() const { return line_number; }

  const char* file;
  int line_number;
};

struct LogField {
  std::string_view key;
  std::string value;
};

// Process-wide settings; call once from main before threads start. Default: info, text, stderr.
void ConfigureLogging(LogLevel min_level, LogFormat format, std::ostream* sink = nullptr);
bool ParseLogLevel(std::string_view text, LogLevel* level);
bool ParseLogFormat(std::string_view text, LogFormat* format);
bool LogEnabled(LogLevel level);

void LogAt(LogLevel level, std::string_view message, std::initializer_list<LogField> fields,
           SourceLocation where);

inline void LogDebug(std::string_view message, std::initializer_list<LogField> fields = {},
                     SourceLocation where = SourceLocation::current()) {
  LogAt(LogLevel::kDebug, message, fields, where);
}
inline void LogInfo(std::string_view message, std::initializer_list<LogField> fields = {},
                    SourceLocation where = SourceLocation::current()) {
  LogAt(LogLevel::kInfo, message, fields, where);
}
inline void LogWarning(std::string_view message, std::initializer_list<LogField> fields = {},
                       SourceLocation where = SourceLocation::current()) {
  LogAt(LogLevel::kWarning, message, fields, where);
}
inline void LogError(std::string_view message, std::initializer_list<LogField> fields = {},
                     SourceLocation where = SourceLocation::current()) {
  LogAt(LogLevel::kError, message, fields, where);
}

}  // namespace strata
