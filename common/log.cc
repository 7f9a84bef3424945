#include "common/log.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <iostream>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace strata {
namespace {

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<LogFormat> g_format{LogFormat::kText};
std::atomic<std::ostream*> g_sink{nullptr};
std::mutex g_write_mutex;

constexpr char kLevelLetters[] = {'D', 'I', 'W', 'E'};
constexpr const char* kLevelNames[] = {"debug", "info", "warning", "error"};

std::string_view BaseName(std::string_view path) {
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Quotes a value the way klog's structured text does: Go-style double-quoted string.
std::string Quote(std::string_view value) {
  return nlohmann::json(std::string(value))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

void ConfigureLogging(LogLevel min_level, LogFormat format, std::ostream* sink) {
  g_min_level = static_cast<int>(min_level);
  g_format = format;
  g_sink = sink;
}

bool ParseLogLevel(std::string_view text, LogLevel* level) {
  for (int i = 0; i < 4; ++i) {
    if (text == kLevelNames[i]) {
      *level = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

bool ParseLogFormat(std::string_view text, LogFormat* format) {
  if (text == "text")
    *format = LogFormat::kText;
  else if (text == "json")
    *format = LogFormat::kJson;
  else
    return false;
  return true;
}

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_min_level.load(); }

void LogAt(LogLevel level, std::string_view message, std::initializer_list<LogField> fields,
           SourceLocation where) {
  if (!LogEnabled(level)) return;
  auto now = std::chrono::system_clock::now();
  std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  long micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm utc;
  gmtime_r(&seconds, &utc);
  std::string caller =
      std::string(BaseName(where.file_name())) + ":" + std::to_string(where.line());
  std::string line;
  if (g_format.load() == LogFormat::kJson) {
    nlohmann::ordered_json record;
    char stamp[32];
    std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
    record["ts"] = absl::StrFormat("%s.%06dZ", stamp, micros);
    record["level"] = kLevelNames[static_cast<int>(level)];
    record["caller"] = caller;
    record["msg"] = std::string(message);
    for (const LogField& field : fields) record[std::string(field.key)] = field.value;
    line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    line = absl::StrFormat("%c%02d%02d %02d:%02d:%02d.%06d %7d %s] %s",
                           kLevelLetters[static_cast<int>(level)], utc.tm_mon + 1, utc.tm_mday,
                           utc.tm_hour, utc.tm_min, utc.tm_sec, micros,
                           static_cast<int>(syscall(SYS_gettid)), caller, Quote(message));
    for (const LogField& field : fields)
      line.append(" ").append(field.key).append("=").append(Quote(field.value));
  }
  line.push_back('\n');
  std::ostream* sink = g_sink.load();
  std::lock_guard<std::mutex> lock(g_write_mutex);
  (sink ? *sink : std::cerr) << line << std::flush;
}

}  // namespace strata
