// stratactl: the operator's command line for one node's Strata store. It talks to strata-csi's
// admin API (strata.admin.v1) over a unix socket and never opens the store itself.
//
//   stratactl [--admin-endpoint unix:///var/lib/strata/admin.sock] [-o table|json] COMMAND ...
//
// Flags may come before or after the command. Exit codes: 0 success, 1 the call failed,
// 2 bad usage. docs/stratactl.md has the details.

#include <fnmatch.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/size.h"
#include "csi.grpc.pb.h"
#include "drivers/devmapper/devmapper_driver.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "strata/version.h"
#include "strata_admin.grpc.pb.h"
#include "sys/devmapper.h"

namespace {

namespace pb = strata::admin::v1;
using Json = nlohmann::ordered_json;

constexpr char kDefaultEndpoint[] = "unix:///var/lib/strata/admin.sock";
constexpr char kEndpointEnv[] = "STRATA_ADMIN_ENDPOINT";
// Listings answer in milliseconds; an import of a large image may take minutes, so it has none.
constexpr int kCallDeadlineSeconds = 60;

constexpr char kUsage[] = R"(Usage: stratactl [FLAGS] COMMAND [ARGS]

Inspect and manage the layers, images and volumes of the Strata CSI plugin on this node.

Commands:
  import PATH [--name REF]   import a docker-save archive or OCI layout found at PATH on this node
  images [-q] [--filter reference=PATTERN|dangling=true|false]... [--no-trunc]
                             list images, sorted by name; -q prints only the ids
  layers [--tree]            list layers; --tree draws how chains share layers
  volumes                    list volumes
  inspect ID...              full JSON record of a volume id, image name or layer id
                             (sha256:<hex>, at least 12 hex digits)
  rm IMAGE...                remove image references (layers stay until gc)
  gc [--dry-run]             remove layers no image or volume uses
  dm-pool create|remove NAME DIR [DATA_SIZE [METADATA_SIZE]]
                             (on this machine, for development and tests) a devicemapper thin
                             pool on loop files in DIR (default 10GiB data, 256MiB metadata)
  commit VOLUME --tag NAME [-m MESSAGE]
                             commit a volume's writable layer as image NAME
  rollback VOLUME SNAPSHOT   reset an unused volume to a snapshot (its state is kept first)
  snapshots [--volume ID]    list snapshots
  history REF [--no-trunc]   the layers of an image, snapshot or layer, top first
  diff FROM TO               what changed from FROM to TO (A added, C changed, D deleted); each
                             a volume id (its current state), image, snapshot or layer id
  save REF -o FILE [--format docker|oci] [--tag NAME]... [--force]
                             write an image, snapshot or layer chain as a docker-save tar or an
                             OCI layout (a folder, or a tar if FILE ends in .tar) on this node;
                             FILE must not exist (--force replaces a regular file) and must
                             lie outside the store
  check [--repair]           compare metadata, disk and mounts (missing layers, unknown
                             content, half-made records, mounts without records); --repair
                             fixes only what cannot lose data. Exit code 3 when problems are left
  backup FILE                copy the metadata database to FILE on this node (online; FILE must
                             not exist and must lie outside the store; restore: docs/operations.md)
  quarantine list            store content start-up recovery could not account for and kept
                             (never deleted) under <root>/quarantine
  quarantine restore ENTRY [--volume NAME]
                             put an entry back: a writable layer becomes a volume (its own
                             name, id and chain when its label says so; else NAME), a layer a
                             layer again (and with --volume, a new volume on it)
  quarantine purge ENTRY     delete one entry for good (the only way; no wildcards)
  version                    client and server versions
  help                       this text

Flags (anywhere on the line):
  --admin-endpoint ENDPOINT  admin API address (default $STRATA_ADMIN_ENDPOINT, else
                             unix:///var/lib/strata/admin.sock)
  -o, --output table|json    output format (default table); for save: the file to write
                             (save refuses -o json and -o table: write ./json for such a file)
  --no-trunc                 full ids in tables (default: sha256: and 12 hex digits)
  -h, --help                 this text
)";

struct Options {
  std::string endpoint;
  std::string output = "table";
  std::optional<std::string> name;
  std::vector<std::string> tags;
  std::optional<std::string> message;
  std::optional<std::string> volume;
  std::optional<std::string> format;
  bool no_trunc = false;
  bool quiet = false;
  std::vector<std::string> filters;
  bool output_given = false;
  bool tree = false;
  bool dry_run = false;
  bool force = false;
  bool repair = false;
  bool help = false;
  std::vector<std::string> args;  // command first
};

// Thrown only inside this file, for bad command lines; main turns it into exit code 2.
struct UsageError {
  std::string message;
};

// The admin API is a unix socket: an endpoint without a scheme is its path (gRPC would take
// it for a DNS name), relative to the working directory like any path argument.
std::string NormalizeEndpoint(const std::string& endpoint) {
  if (endpoint.find("://") != std::string::npos) return endpoint;
  if (endpoint.rfind("unix:", 0) == 0) return endpoint;  // unix:relative/path, gRPC's spelling
  if (endpoint.empty()) throw UsageError{"--admin-endpoint must not be empty"};
  std::error_code error;
  std::filesystem::path path = std::filesystem::absolute(endpoint, error);
  return "unix://" + (error ? endpoint : path.lexically_normal().string());
}

Options ParseArgs(int argc, char** argv) {
  Options options;
  const char* env = std::getenv(kEndpointEnv);
  options.endpoint = (env != nullptr && *env != '\0') ? env : kDefaultEndpoint;
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      options.args.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    std::string flag = arg;
    std::optional<std::string> value;
    if (size_t eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      flag = arg.substr(0, eq);
      value = arg.substr(eq + 1);
    } else if (arg.rfind("-o", 0) == 0 && arg.size() > 2 && arg[1] != '-') {
      flag = "-o";  // -ojson, -o=json
      value = arg.substr(arg[2] == '=' ? 3 : 2);
    }
    auto take_value = [&]() -> std::string {
      if (value) return *value;
      if (i + 1 >= argc) throw UsageError{flag + " needs a value"};
      return argv[++i];
    };
    auto no_value = [&]() {
      if (value) throw UsageError{flag + " takes no value"};
    };
    if (flag == "--admin-endpoint") {
      options.endpoint = take_value();
    } else if (flag == "-o" || flag == "--output") {
      // Checked in Run: for save it names the output file.
      options.output = take_value();
      options.output_given = true;
    } else if (flag == "--name") {
      options.name = take_value();
    } else if (flag == "--tag" || flag == "-t") {
      options.tags.push_back(take_value());
    } else if (flag == "-m" || flag == "--message") {
      options.message = take_value();
    } else if (flag == "--volume") {
      options.volume = take_value();
    } else if (flag == "--format") {
      options.format = take_value();
    } else if (flag == "-q" || flag == "--quiet") {
      no_value();
      options.quiet = true;
    } else if (flag == "--filter") {
      options.filters.push_back(take_value());
    } else if (flag == "--no-trunc") {
      no_value();
      options.no_trunc = true;
    } else if (flag == "--tree") {
      no_value();
      options.tree = true;
    } else if (flag == "--dry-run") {
      no_value();
      options.dry_run = true;
    } else if (flag == "--repair") {
      no_value();
      options.repair = true;
    } else if (flag == "--force" || flag == "-f") {
      no_value();
      options.force = true;
    } else if (flag == "-h" || flag == "--help") {
      no_value();
      options.help = true;
    } else {
      throw UsageError{"unknown flag " + flag};
    }
  }
  options.endpoint = NormalizeEndpoint(options.endpoint);
  return options;
}

// ---- formatting -------------------------------------------------------------------------

// Decimal units with one decimal, like `docker images`: 12.3 MB, 1.1 kB, 512 B.
std::string HumanSize(int64_t bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  if (bytes < 1000) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 999.95 && unit < 6) {
    value /= 1000;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.1f %s", value, kUnits[unit]);
  return buffer;
}

// --no-trunc: every table shows whole ids.
bool g_full_ids = false;

// "sha256:<first 12 hex>" (the whole id with --no-trunc); anything else unchanged.
std::string ShortId(const std::string& id) {
  const std::string prefix = "sha256:";
  if (g_full_ids) return id;
  if (id.rfind(prefix, 0) == 0 && id.size() > prefix.size() + 12)
    return id.substr(0, prefix.size() + 12);
  return id;
}

std::string Ago(int64_t unix_seconds) {
  if (unix_seconds <= 0) return "";
  int64_t seconds = static_cast<int64_t>(std::time(nullptr)) - unix_seconds;
  if (seconds < 0) seconds = 0;
  auto plural = [](int64_t n, const char* unit) {
    return std::to_string(n) + " " + unit + (n == 1 ? "" : "s") + " ago";
  };
  if (seconds < 1) return "just now";
  if (seconds < 60) return plural(seconds, "second");
  if (seconds < 3600) return plural(seconds / 60, "minute");
  if (seconds < 86400) return plural(seconds / 3600, "hour");
  return plural(seconds / 86400, "day");
}

std::string Join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? separator : "") + parts[i];
  return out;
}

template <typename Repeated>
std::vector<std::string> ToVector(const Repeated& repeated) {
  return std::vector<std::string>(repeated.begin(), repeated.end());
}

// Left-aligned columns separated by three spaces, like kubectl and docker.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(header.size());
  for (size_t c = 0; c < header.size(); ++c) widths[c] = header[c].size();
  for (const auto& row : rows)
    for (size_t c = 0; c < row.size() && c < widths.size(); ++c)
      widths[c] = std::max(widths[c], row[c].size());
  auto print_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line += std::string(widths[c] - row[c].size() + 3, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  };
  print_row(header);
  for (const auto& row : rows) print_row(row);
}

// Bytes that are not UTF-8 become U+FFFD rather than an exception: names are escaped before
// they get here (EscapeName), this is the backstop for any other text the server sends.
void PrintJson(const Json& json) {
  std::cout << json.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
}

// Length of the valid UTF-8 sequence at `text[i]` (2..4), or 0 when there is none.
size_t Utf8SequenceAt(const std::string& text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char c = byte(i);
  size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
  if (n == 0 || i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  uint32_t code = n == 2   ? ((c & 0x1F) << 6) | (byte(i + 1) & 0x3F)
                  : n == 3 ? ((c & 0x0F) << 12) | ((byte(i + 1) & 0x3F) << 6) | (byte(i + 2) & 0x3F)
                           : ((c & 0x07) << 18) | ((byte(i + 1) & 0x3F) << 12) |
                                 ((byte(i + 2) & 0x3F) << 6) | (byte(i + 3) & 0x3F);
  bool overlong = (n == 3 && code < 0x800) || (n == 4 && code < 0x10000);
  if (overlong || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return 0;
  return n;
}

// A file name's bytes as text, the way git quotes paths: valid UTF-8 stays as it is; `\`,
// `"`, control bytes and bytes that are not UTF-8 become C escapes (\\, \", \n, \t, \ooo
// octal). `*escaped` tells whether anything was escaped (text output then quotes the name).
std::string EscapeName(const std::string& name, bool* escaped) {
  std::string out;
  *escaped = false;
  for (size_t i = 0; i < name.size();) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (c >= 0x80) {
      size_t n = Utf8SequenceAt(name, i);
      if (n > 0) {
        out.append(name, i, n);
        i += n;
        continue;
      }
    }
    ++i;
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out += static_cast<char>(c);
      continue;
    }
    *escaped = true;
    if (c == '\\' || c == '"') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      char octal[5];
      std::snprintf(octal, sizeof(octal), "\\%03o", c);
      out += octal;
    }
  }
  return out;
}

// ---- calls --------------------------------------------------------------------------------

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// A failed call: printed by main as `stratactl: CODE: message`, plus a hint when known.
struct CallError {
  grpc::Status status;
  std::string hint;
};

class Client {
 public:
  explicit Client(std::string endpoint)
      : endpoint_(std::move(endpoint)),
        channel_(grpc::CreateChannel(endpoint_, grpc::InsecureChannelCredentials())),
        stub_(pb::Admin::NewStub(channel_)) {}

  template <typename Request, typename Response>
  Response Call(grpc::Status (pb::Admin::Stub::*method)(grpc::ClientContext*, const Request&,
                                                        Response*),
                const Request& request, bool long_running = false) {
    grpc::ClientContext context;
    if (!long_running) {
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(kCallDeadlineSeconds));
    }
    Response response;
    grpc::Status status = ((*stub_).*method)(&context, request, &response);
    if (!status.ok()) throw Explain(status);
    return response;
  }

 private:
  // Turns the failures gRPC words for itself (an UNAVAILABLE that hides the errno, an empty
  // UNIMPLEMENTED from a server that is not the admin API) into what happened.
  CallError Explain(const grpc::Status& status) {
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED && WrongServer())
      return {grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                           endpoint_ + " is the CSI socket (strata-csi --endpoint), not the admin "
                                       "socket"),
              "the admin API is served on <--root>/admin.sock (default "
              "/var/lib/strata/admin.sock); pass that to --admin-endpoint"};
    if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED && status.error_message().empty())
      return {grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                           endpoint_ + " does not serve this call of the Strata admin API "
                                       "(strata.admin.v1): is it another program's socket, or an "
                                       "older strata-csi?"),
              ""};
    if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return {status, ""};
    grpc_connectivity_state state = channel_->GetState(false);
    if (state == GRPC_CHANNEL_READY || state == GRPC_CHANNEL_IDLE) return {status, ""};
    const std::string unix_scheme = "unix://";
    if (endpoint_.rfind(unix_scheme, 0) == 0) {
      std::string path = endpoint_.substr(unix_scheme.size());
      int error = ConnectErrno(path);
      if (error == EACCES || error == EPERM) {
        return {grpc::Status(
                    grpc::StatusCode::PERMISSION_DENIED,
                    "cannot connect to the admin socket " + path + ": " + std::strerror(error)),
                "the admin socket and its folder are root's (mode 0700): run stratactl as root "
                "(e.g. in the plugin's container: kubectl exec)"};
      }
    }
    return {status, Hint()};
  }

  // errno of connecting to the unix socket `path` ourselves (0: it accepts).
  static int ConnectErrno(const std::string& path) {
    sockaddr_un address = {};
    if (path.size() >= sizeof(address.sun_path)) return ENAMETOOLONG;
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, path.data(), path.size());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return errno;
    int rc = connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    int error = rc == 0 ? 0 : errno;
    close(fd);
    return error;
  }

  // Whether the endpoint answers the CSI Identity service (then it is strata-csi's CSI socket).
  bool WrongServer() {
    auto identity = ::csi::v1::Identity::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ::csi::v1::GetPluginInfoResponse info;
    return identity->GetPluginInfo(&context, {}, &info).ok();
  }

  // Distinguishes "nobody is listening" from an UNAVAILABLE answer by the server itself.
  std::string Hint() {
    std::string where = endpoint_;
    const std::string unix_scheme = "unix://";
    std::string detail;
    if (endpoint_.rfind(unix_scheme, 0) == 0) {
      std::string path = endpoint_.substr(unix_scheme.size());
      struct stat st;
      int error = stat(path.c_str(), &st) != 0 ? errno : 0;
      if (error == ENOENT || error == ENOTDIR) {
        detail = " (" + path + " does not exist)";
      } else if (error != 0) {
        detail = " (" + path + ": " + std::strerror(error) + ")";
      } else if (!S_ISSOCK(st.st_mode)) {
        detail = " (" + path + " is not a socket)";
      } else {
        detail = " (" + path + " exists but nothing accepts connections on it)";
      }
    }
    return "cannot reach the Strata admin API at " + where + detail +
           ". strata-csi must be running on this node; it serves the admin API on "
           "<--root>/admin.sock (default /var/lib/strata/admin.sock). Point stratactl elsewhere "
           "with --admin-endpoint or $" +
           kEndpointEnv + ".";
  }

  std::string endpoint_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<pb::Admin::Stub> stub_;
};

void ExpectArgs(const Options& options, size_t min, size_t max, const char* usage) {
  size_t given = options.args.size() - 1;
  if (given < min || given > max) throw UsageError{std::string("usage: stratactl ") + usage};
}

// ---- commands -----------------------------------------------------------------------------

int Import(Client& client, const Options& options) {
  ExpectArgs(options, 1, 1, "import PATH [--name REF]");
  pb::ImportImageRequest request;
  // The server resolves the path on the node; make a relative one mean what the user sees.
  std::error_code error;
  std::filesystem::path path = std::filesystem::absolute(options.args[1], error);
  request.set_path(error ? options.args[1] : path.lexically_normal().string());
  if (options.name) request.set_name(*options.name);
  pb::ImportImageResponse response =
      client.Call(&pb::Admin::Stub::ImportImage, request, /*long_running=*/true);
  if (options.output == "json") {
    PrintJson({{"names", ToVector(response.names())},
               {"chain_id", response.chain_id()},
               {"layers_total", response.layers_total()},
               {"layers_new", response.layers_new()},
               {"bytes_new", response.bytes_new()}});
  } else {
    std::cout << "Imported " << Join(ToVector(response.names()), ", ") << " ("
              << ShortId(response.chain_id()) << "): " << response.layers_total() << " layers, "
              << response.layers_new() << " new, " << HumanSize(response.bytes_new())
              << " stored\n";
  }
  return 0;
}

int Images(Client& client, const Options& options) {
  ExpectArgs(options, 0, 0, "images [-q] [--filter KEY=VALUE]...");
  std::vector<std::string> references;
  std::optional<bool> dangling;
  for (const std::string& filter : options.filters) {
    size_t eq = filter.find('=');
    std::string key = filter.substr(0, eq),
                value = eq == std::string::npos ? "" : filter.substr(eq + 1);
    if (eq == std::string::npos || value.empty()) {
      throw UsageError{
          "--filter takes KEY=VALUE (reference=PATTERN or dangling=true|false), not \"" + filter +
          "\""};
    }
    if (key == "reference") {
      references.push_back(value);
    } else if (key == "dangling" && (value == "true" || value == "false")) {
      dangling = value == "true";
    } else {
      throw UsageError{"unknown filter \"" + filter +
                       "\" (known: reference=PATTERN, dangling=true|false)"};
    }
  }
  pb::ListImagesResponse all = client.Call(&pb::Admin::Stub::ListImages, {});
  // Every image Strata lists has a name, so none is dangling (an untagged image in Docker's
  // words); layers no image uses are what `gc` removes. PATTERN is a shell glob matched against
  // the whole name and against the name without its :tag, as Docker does.
  pb::ListImagesResponse response;
  for (const pb::Image& image : all.images()) {
    if (dangling.value_or(false)) continue;
    bool match = references.empty();
    std::string name = image.name();
    size_t slash = name.rfind('/'), colon = name.rfind(':');
    std::string repository =
        colon != std::string::npos && (slash == std::string::npos || colon > slash)
            ? name.substr(0, colon)
            : name;
    for (const std::string& pattern : references) {
      if (fnmatch(pattern.c_str(), name.c_str(), 0) == 0 ||
          fnmatch(pattern.c_str(), repository.c_str(), 0) == 0)
        match = true;
    }
    if (match) *response.add_images() = image;
  }
  // Stable order whatever the server sends: by name.
  std::sort(response.mutable_images()->begin(), response.mutable_images()->end(),
            [](const pb::Image& a, const pb::Image& b) { return a.name() < b.name(); });
  if (options.quiet) {
    // Like `docker images -q`: one id per image, each id once.
    std::set<std::string> seen;
    for (const pb::Image& image : response.images()) {
      if (!seen.insert(image.chain_id()).second) continue;
      std::cout << ShortId(image.chain_id()) << "\n";
    }
    return 0;
  }
  if (options.output == "json") {
    Json images = Json::array();
    for (const pb::Image& image : response.images()) {
      images.push_back({{"name", image.name()},
                        {"chain_id", image.chain_id()},
                        {"layers", image.layers()},
                        {"size_bytes", image.size_bytes()},
                        {"created_unix", image.created_unix()}});
    }
    PrintJson(images);
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const pb::Image& image : response.images()) {
    rows.push_back({image.name(), ShortId(image.chain_id()), std::to_string(image.layers()),
                    HumanSize(image.size_bytes()), Ago(image.created_unix())});
  }
  PrintTable({"IMAGE", "CHAIN ID", "LAYERS", "SIZE", "CREATED"}, rows);
  return 0;
}

Json LayerJson(const pb::Layer& layer) {
  return {{"chain_id", layer.chain_id()},
          {"diff_id", layer.diff_id()},
          {"parent_chain_id", layer.parent_chain_id()},
          {"size_bytes", layer.size_bytes()},
          {"created_unix", layer.created_unix()},
          {"state", layer.state()},
          {"references", layer.references()},
          {"image_names", ToVector(layer.image_names())},
          {"volume_ids", ToVector(layer.volume_ids())},
          {"snapshot_names", ToVector(layer.snapshot_names())},
          {"comment", layer.comment()}};
}

// Draws the layer forest like `docker images --tree`. What sits directly on a layer is what its
// own list has and none of its children's lists has: an image or volume on a child contains
// this layer too.
class LayerTree {
 public:
  explicit LayerTree(const pb::ListLayersResponse& response) {
    for (const pb::Layer& layer : response.layers()) by_id_[layer.chain_id()] = &layer;
    for (const pb::Layer& layer : response.layers()) {
      if (layer.parent_chain_id().empty() || !by_id_.count(layer.parent_chain_id())) {
        roots_.push_back(&layer);
      } else {
        children_[layer.parent_chain_id()].push_back(&layer);
      }
    }
  }

  void Print() const {
    for (size_t i = 0; i < roots_.size(); ++i) PrintNode(*roots_[i], "", i + 1 == roots_.size());
  }

  Json ToJson() const {
    Json roots = Json::array();
    for (const pb::Layer* root : roots_) roots.push_back(NodeJson(*root));
    return roots;
  }

 private:
  std::vector<std::string> Own(const pb::Layer& layer,
                               std::vector<std::string> (*field)(const pb::Layer&)) const {
    std::set<std::string> below;
    auto it = children_.find(layer.chain_id());
    if (it != children_.end())
      for (const pb::Layer* child : it->second)
        for (const std::string& value : field(*child)) below.insert(value);
    std::vector<std::string> own;
    for (const std::string& value : field(layer))
      if (!below.count(value)) own.push_back(value);
    return own;
  }
  static std::vector<std::string> Images(const pb::Layer& l) { return ToVector(l.image_names()); }
  static std::vector<std::string> Volumes(const pb::Layer& l) { return ToVector(l.volume_ids()); }
  static std::vector<std::string> Snapshots(const pb::Layer& l) {
    return ToVector(l.snapshot_names());
  }

  const std::vector<const pb::Layer*>& Children(const pb::Layer& layer) const {
    static const std::vector<const pb::Layer*> kNone;
    auto it = children_.find(layer.chain_id());
    return it == children_.end() ? kNone : it->second;
  }

  void PrintNode(const pb::Layer& layer, const std::string& prefix, bool last) const {
    std::string line = prefix + (last ? "└─" : "├─") + ShortId(layer.chain_id()) + " " +
                       HumanSize(layer.size_bytes());
    std::vector<std::string> images = Own(layer, &Images);
    if (!images.empty()) line += "  " + Join(images, ", ");
    std::vector<std::string> snapshots = Own(layer, &Snapshots);
    if (!snapshots.empty()) line += "  snapshot " + Join(snapshots, ", snapshot ");
    size_t volumes = Own(layer, &Volumes).size();
    if (volumes > 0)
      line += "   (" + std::to_string(volumes) + (volumes == 1 ? " volume)" : " volumes)");
    if (!layer.state().empty() && layer.state() != "ready") line += "   [" + layer.state() + "]";
    std::cout << line << "\n";
    const auto& children = Children(layer);
    for (size_t i = 0; i < children.size(); ++i)
      PrintNode(*children[i], prefix + (last ? "  " : "│ "), i + 1 == children.size());
  }

  Json NodeJson(const pb::Layer& layer) const {
    Json children = Json::array();
    for (const pb::Layer* child : Children(layer)) children.push_back(NodeJson(*child));
    return {{"chain_id", layer.chain_id()},
            {"size_bytes", layer.size_bytes()},
            {"state", layer.state()},
            {"images", Own(layer, &Images)},
            {"snapshots", Own(layer, &Snapshots)},
            {"volumes", Own(layer, &Volumes)},
            {"comment", layer.comment()},
            {"children", std::move(children)}};
  }

  std::map<std::string, const pb::Layer*> by_id_;
  std::map<std::string, std::vector<const pb::Layer*>> children_;
  std::vector<const pb::Layer*> roots_;
};

int Layers(Client& client, const Options& options) {
  ExpectArgs(options, 0, 0, "layers [--tree]");
  pb::ListLayersResponse response = client.Call(&pb::Admin::Stub::ListLayers, {});
  if (options.tree) {
    LayerTree tree(response);
    if (options.output == "json") {
      PrintJson(tree.ToJson());
    } else {
      tree.Print();
    }
    return 0;
  }
  if (options.output == "json") {
    Json layers = Json::array();
    for (const pb::Layer& layer : response.layers()) layers.push_back(LayerJson(layer));
    PrintJson(layers);
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const pb::Layer& layer : response.layers()) {
    rows.push_back(
        {ShortId(layer.chain_id()), ShortId(layer.parent_chain_id()), HumanSize(layer.size_bytes()),
         std::to_string(layer.references()), Join(ToVector(layer.image_names()), ","),
         std::to_string(layer.volume_ids_size()), layer.state(), Ago(layer.created_unix())});
  }
  PrintTable({"CHAIN ID", "PARENT", "SIZE", "REFS", "IMAGES", "VOLUMES", "STATE", "CREATED"}, rows);
  return 0;
}

int Volumes(Client& client, const Options& options) {
  ExpectArgs(options, 0, 0, "volumes");
  pb::ListVolumesResponse response = client.Call(&pb::Admin::Stub::ListVolumes, {});
  if (options.output == "json") {
    Json volumes = Json::array();
    for (const pb::Volume& volume : response.volumes()) {
      volumes.push_back({{"volume_id", volume.volume_id()},
                         {"name", volume.name()},
                         {"image", volume.image()},
                         {"chain_id", volume.chain_id()},
                         {"state", volume.state()},
                         {"capacity_bytes", volume.capacity_bytes()},
                         {"used_bytes", volume.used_bytes()},
                         {"chain_depth", volume.chain_depth()},
                         {"staging_path", volume.staging_path()},
                         {"target_paths", ToVector(volume.target_paths())},
                         {"ephemeral", volume.ephemeral()},
                         {"created_unix", volume.created_unix()}});
    }
    PrintJson(volumes);
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const pb::Volume& volume : response.volumes()) {
    rows.push_back({volume.volume_id(), volume.name(),
                    volume.image().empty() ? "<empty>" : volume.image(), volume.state(),
                    std::to_string(volume.chain_depth()),
                    volume.capacity_bytes() > 0 ? HumanSize(volume.capacity_bytes()) : "-",
                    volume.used_bytes() > 0 ? HumanSize(volume.used_bytes()) : "-",
                    std::to_string(volume.target_paths_size()), volume.ephemeral() ? "yes" : "no"});
  }
  PrintTable({"VOLUME ID", "NAME", "IMAGE", "STATE", "DEPTH", "CAPACITY", "USED", "PUBLISHED",
              "EPHEMERAL"},
             rows);
  return 0;
}

int Inspect(Client& client, const Options& options) {
  ExpectArgs(options, 1, SIZE_MAX, "inspect ID...");
  Json documents = Json::array();
  for (size_t i = 1; i < options.args.size(); ++i) {
    pb::InspectRequest request;
    request.set_id(options.args[i]);
    pb::InspectResponse response = client.Call(&pb::Admin::Stub::Inspect, request);
    Json document = Json::parse(response.json(), nullptr, /*allow_exceptions=*/false);
    documents.push_back(document.is_discarded() ? Json(response.json()) : document);
  }
  // Always JSON: an inspect record is a document, not a table.
  PrintJson(documents.size() == 1 ? documents[0] : documents);
  return 0;
}

int Remove(Client& client, const Options& options) {
  ExpectArgs(options, 1, SIZE_MAX, "rm IMAGE...");
  Json removed = Json::array();
  for (size_t i = 1; i < options.args.size(); ++i) {
    pb::RemoveImageRequest request;
    request.set_name(options.args[i]);
    client.Call(&pb::Admin::Stub::RemoveImage, request);
    removed.push_back(options.args[i]);
    if (options.output != "json") std::cout << "Removed " << options.args[i] << "\n";
  }
  if (options.output == "json") {
    PrintJson({{"removed", removed}});
  } else {
    std::cout << "Layers stay until `stratactl gc` finds them unused.\n";
  }
  return 0;
}

int Gc(Client& client, const Options& options) {
  ExpectArgs(options, 0, 0, "gc [--dry-run]");
  pb::GarbageCollectRequest request;
  request.set_dry_run(options.dry_run);
  pb::GarbageCollectResponse response = client.Call(&pb::Admin::Stub::GarbageCollect, request);
  if (options.output == "json") {
    PrintJson({{"dry_run", options.dry_run},
               {"removed_chain_ids", ToVector(response.removed_chain_ids())},
               {"bytes_freed", response.bytes_freed()}});
    return 0;
  }
  for (const std::string& id : response.removed_chain_ids())
    std::cout << (options.dry_run ? "Would remove " : "Removed ") << ShortId(id) << "\n";
  std::cout << (options.dry_run ? "Would free " : "Freed ") << HumanSize(response.bytes_freed())
            << " in " << response.removed_chain_ids_size() << " layers\n";
  return 0;
}

int Version(Client& client, const Options& options) {
  ExpectArgs(options, 0, 0, "version");
  if (options.output != "json") std::cout << "Client: " << strata::kVersion << "\n";
  pb::VersionResponse response = client.Call(&pb::Admin::Stub::Version, {});
  if (options.output == "json") {
    PrintJson({{"client", strata::kVersion}, {"server", response.version()}});
  } else {
    std::cout << "Server: " << response.version() << "\n";
  }
  return 0;
}

// ---- history: commit, rollback, snapshots, history, diff, save ----------------------------

Json SnapshotJson(const pb::Snapshot& snapshot) {
  return {{"snapshot_id", snapshot.snapshot_id()},
          {"name", snapshot.name()},
          {"source_volume_id", snapshot.source_volume_id()},
          {"chain_id", snapshot.chain_id()},
          {"size_bytes", snapshot.size_bytes()},
          {"created_unix", snapshot.created_unix()},
          {"state", snapshot.state()}};
}

int Commit(Client& client, const Options& options) {
  ExpectArgs(options, 1, 1, "commit VOLUME --tag NAME [-m MESSAGE]");
  if (options.tags.size() != 1) throw UsageError{"commit needs exactly one --tag NAME"};
  pb::CommitRequest request;
  request.set_volume_id(options.args[1]);
  request.set_tag(options.tags[0]);
  if (options.message) request.set_message(*options.message);
  // Overlay and vfs copy the writable layer: as long as the data takes.
  pb::CommitResponse response =
      client.Call(&pb::Admin::Stub::Commit, request, /*long_running=*/true);
  if (options.output == "json") {
    PrintJson({{"tag", response.tag()},
               {"chain_id", response.chain_id()},
               {"size_bytes", response.size_bytes()},
               {"depth", response.depth()},
               {"flattened", response.flattened()},
               {"previous_chain_id", response.previous_chain_id()}});
    return 0;
  }
  std::cout << "Committed " << options.args[1] << " as " << response.tag() << " ("
            << ShortId(response.chain_id()) << "): " << HumanSize(response.size_bytes())
            << ", chain depth " << response.depth()
            << (response.flattened() ? " (flattened: the layer holds the whole tree)" : "") << "\n";
  if (!response.previous_chain_id().empty()) {
    std::cout << response.tag() << " moved from " << ShortId(response.previous_chain_id()) << "\n";
  }
  return 0;
}

int Rollback(Client& client, const Options& options) {
  ExpectArgs(options, 2, 2, "rollback VOLUME SNAPSHOT");
  pb::RollbackRequest request;
  request.set_volume_id(options.args[1]);
  request.set_snapshot(options.args[2]);
  pb::RollbackResponse response =
      client.Call(&pb::Admin::Stub::Rollback, request, /*long_running=*/true);
  if (options.output == "json") {
    PrintJson({{"volume_id", options.args[1]},
               {"chain_id", response.chain_id()},
               {"previous_state", SnapshotJson(response.previous_state())}});
    return 0;
  }
  std::cout << "Rolled " << options.args[1] << " back to " << options.args[2] << " ("
            << ShortId(response.chain_id()) << ")\n"
            << "Its previous state is snapshot " << response.previous_state().snapshot_id() << " ("
            << response.previous_state().name() << "); undo with: stratactl rollback "
            << options.args[1] << " " << response.previous_state().snapshot_id() << "\n";
  return 0;
}

int Snapshots(Client& client, const Options& options) {
  ExpectArgs(options, 0, 0, "snapshots [--volume ID]");
  pb::ListSnapshotsRequest request;
  if (options.volume) request.set_volume_id(*options.volume);
  pb::ListSnapshotsResponse response = client.Call(&pb::Admin::Stub::ListSnapshots, request);
  if (options.output == "json") {
    Json snapshots = Json::array();
    for (const pb::Snapshot& snapshot : response.snapshots())
      snapshots.push_back(SnapshotJson(snapshot));
    PrintJson(snapshots);
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const pb::Snapshot& snapshot : response.snapshots()) {
    rows.push_back({snapshot.snapshot_id(), snapshot.name(), snapshot.source_volume_id(),
                    ShortId(snapshot.chain_id()), HumanSize(snapshot.size_bytes()),
                    snapshot.state(), Ago(snapshot.created_unix())});
  }
  PrintTable({"SNAPSHOT ID", "NAME", "VOLUME", "CHAIN ID", "SIZE", "STATE", "CREATED"}, rows);
  return 0;
}

int History(Client& client, const Options& options) {
  ExpectArgs(options, 1, 1, "history IMAGE|SNAPSHOT|LAYER [--no-trunc]");
  pb::HistoryRequest request;
  request.set_ref(options.args[1]);
  pb::HistoryResponse response = client.Call(&pb::Admin::Stub::History, request);
  if (options.output == "json") {
    Json layers = Json::array();
    for (const pb::HistoryLayer& layer : response.layers()) {
      layers.push_back({{"chain_id", layer.chain_id()},
                        {"diff_id", layer.diff_id()},
                        {"size_bytes", layer.size_bytes()},
                        {"created_unix", layer.created_unix()},
                        {"comment", layer.comment()}});
    }
    PrintJson(layers);
    return 0;
  }
  // Like `docker history`: one line per layer, the comment cut unless --no-trunc.
  constexpr size_t kCommentWidth = 60;
  std::vector<std::vector<std::string>> rows;
  for (const pb::HistoryLayer& layer : response.layers()) {
    std::string comment = layer.comment();
    for (char& c : comment)
      if (c == '\n' || c == '\t') c = ' ';
    if (!options.no_trunc && comment.size() > kCommentWidth)
      comment = comment.substr(0, kCommentWidth - 3) + "...";
    rows.push_back({options.no_trunc ? layer.chain_id() : ShortId(layer.chain_id()),
                    Ago(layer.created_unix()), HumanSize(layer.size_bytes()), comment});
  }
  PrintTable({"ID", "CREATED", "SIZE", "COMMENT"}, rows);
  return 0;
}

char ChangeLetter(pb::Change::Kind kind) {
  switch (kind) {
    case pb::Change::ADDED:
      return 'A';
    case pb::Change::CHANGED:
      return 'C';
    case pb::Change::DELETED:
      return 'D';
    default:
      return '?';
  }
}

int Diff(Client& client, const Options& options) {
  ExpectArgs(options, 2, 2, "diff FROM TO");
  pb::DiffRequest request;
  request.set_from_ref(options.args[1]);
  request.set_to_ref(options.args[2]);
  // Walks two whole trees: as long as that takes.
  pb::DiffResponse response = client.Call(&pb::Admin::Stub::Diff, request, /*long_running=*/true);
  // Paths are bytes (a Linux name need not be UTF-8): printed escaped (EscapeName); text
  // output quotes an escaped name like git does, JSON holds the escaped text.
  if (options.output == "json") {
    Json changes = Json::array();
    for (const pb::Change& change : response.changes()) {
      bool escaped = false;
      changes.push_back({{"kind", std::string(1, ChangeLetter(change.kind()))},
                         {"path", EscapeName(change.path(), &escaped)}});
    }
    PrintJson(changes);
    return 0;
  }
  for (const pb::Change& change : response.changes()) {
    bool escaped = false;
    std::string path = EscapeName(change.path(), &escaped);
    std::cout << ChangeLetter(change.kind()) << " " << (escaped ? "\"" + path + "\"" : path)
              << "\n";
  }
  return 0;
}

int Save(Client& client, const Options& options) {
  ExpectArgs(options, 1, 1, "save REF -o FILE [--format docker|oci] [--tag NAME]...");
  if (!options.output_given) throw UsageError{"save needs -o FILE"};
  // -o is the output format everywhere else: `save X -o json` is more likely that slip than a
  // wish for a file named json in the working directory. Docker's -o is only ever a file.
  if (options.output == "json" || options.output == "table") {
    throw UsageError{"save -o names the file to write, and \"" + options.output +
                     "\" looks like an output format; write ./" + options.output +
                     " to mean a file of that name"};
  }
  pb::SaveRequest request;
  request.set_ref(options.args[1]);
  std::error_code error;
  std::filesystem::path path = std::filesystem::absolute(options.output, error);
  request.set_path(error ? options.output : path.lexically_normal().string());
  std::string format = options.format.value_or("docker");
  if (format == "docker") {
    request.set_format(pb::SaveRequest::DOCKER);
  } else if (format == "oci") {
    request.set_format(pb::SaveRequest::OCI);
  } else {
    throw UsageError{"--format must be docker or oci, not \"" + format + "\""};
  }
  for (const std::string& tag : options.tags) request.add_tags(tag);
  request.set_force(options.force);
  pb::SaveResponse response = client.Call(&pb::Admin::Stub::Save, request, /*long_running=*/true);
  bool escaped = false;
  std::string saved_path = EscapeName(response.path(), &escaped);
  std::cout << "Saved " << options.args[1] << " (" << ShortId(response.chain_id()) << ") to "
            << (escaped ? "\"" + saved_path + "\"" : saved_path) << " as " << format << ": "
            << response.diff_ids_size() << " layers, " << HumanSize(response.bytes());
  if (response.tags_size() > 0) std::cout << ", tagged " << Join(ToVector(response.tags()), ", ");
  std::cout << "\n";
  return 0;
}

// dm-pool works on this machine directly, not through the plugin: a pool must exist before
// strata-csi starts with --dm-thinpool.
int DmPool(const Options& options) {
  ExpectArgs(options, 3, 5, "dm-pool create|remove NAME DIR [DATA_SIZE [METADATA_SIZE]]");
  const std::string& action = options.args[1];
  const std::string& name = options.args[2];
  const std::string& dir = options.args[3];
  absl::Status status;
  if (action == "create") {
    absl::StatusOr<int64_t> data = strata::ParseSize(
        options.args.size() > 4 ? options.args[4] : std::string("10GiB"), "DATA_SIZE");
    absl::StatusOr<int64_t> metadata = strata::ParseSize(
        options.args.size() > 5 ? options.args[5] : std::string("256MiB"), "METADATA_SIZE");
    if (!data.ok()) throw UsageError{std::string(data.status().message())};
    if (!metadata.ok()) throw UsageError{std::string(metadata.status().message())};
    status = strata::drivers::CreateLoopThinPool(dir, name, *data, *metadata);
  } else if (action == "remove") {
    std::unique_ptr<strata::sys::DeviceMapper> dm = strata::sys::NewLibdmDeviceMapper();
    status = strata::drivers::RemoveLoopThinPool(*dm, dir, name);
  } else {
    throw UsageError{"dm-pool takes create or remove, not \"" + action + "\""};
  }
  if (!status.ok()) {
    std::cerr << "stratactl: dm-pool " << action << ": " << status << "\n";
    return 1;
  }
  std::cout << "thin pool " << name << (action == "create" ? " ready" : " removed")
            << "; start strata-csi with --driver devmapper --dm-thinpool " << name << "\n";
  return 0;
}

// ---- check and backup (issue 8) -----------------------------------------------------------

// Exit code of `check` when problems are left (1 is a failed call, 2 a bad command line).
constexpr int kCheckProblemsExit = 3;

int Check(Client& client, const Options& options) {
  ExpectArgs(options, 0, 0, "check [--repair]");
  pb::CheckRequest request;
  request.set_repair(options.repair);
  pb::CheckResponse response = client.Call(&pb::Admin::Stub::Check, request, /*long_running=*/true);
  int left = 0;
  for (const pb::CheckFinding& finding : response.findings()) left += finding.repaired() ? 0 : 1;
  if (options.output == "json") {
    Json findings = Json::array();
    for (const pb::CheckFinding& finding : response.findings()) {
      bool escaped = false;
      findings.push_back({{"kind", finding.kind()},
                          {"subject", EscapeName(finding.subject(), &escaped)},
                          {"detail", finding.detail()},
                          {"action", finding.action()},
                          {"repaired", finding.repaired()}});
    }
    PrintJson({{"repair", options.repair},
               {"volumes", response.volumes()},
               {"layers", response.layers()},
               {"driver_entries", response.driver_entries()},
               {"mounts", response.mounts()},
               {"problems", response.findings_size()},
               {"left", left},
               {"findings", findings}});
  } else {
    std::cout << "Checked " << response.volumes() << " volumes, " << response.layers()
              << " layers, " << response.driver_entries() << " driver entries, "
              << response.mounts() << " mounts\n";
    if (response.findings_size() > 0) {
      std::vector<std::vector<std::string>> rows;
      for (const pb::CheckFinding& finding : response.findings()) {
        bool escaped = false;
        std::string subject = EscapeName(finding.subject(), &escaped);
        rows.push_back({finding.kind(), escaped ? "\"" + subject + "\"" : subject,
                        finding.repaired() ? "yes" : "no", finding.detail(), finding.action()});
      }
      PrintTable({"PROBLEM", "SUBJECT", "REPAIRED", "DETAIL", "ACTION"}, rows);
    }
    if (response.findings_size() == 0) {
      std::cout << "No problems found\n";
    } else {
      std::cout << response.findings_size() << " problems found, "
                << response.findings_size() - left << " repaired, " << left << " left\n";
    }
  }
  return left > 0 ? kCheckProblemsExit : 0;
}

int Backup(Client& client, const Options& options) {
  ExpectArgs(options, 1, 1, "backup FILE");
  pb::BackupRequest request;
  std::error_code error;
  std::filesystem::path path = std::filesystem::absolute(options.args[1], error);
  request.set_path(error ? options.args[1] : path.lexically_normal().string());
  pb::BackupResponse response =
      client.Call(&pb::Admin::Stub::Backup, request, /*long_running=*/true);
  bool escaped = false;
  std::string written = EscapeName(response.path(), &escaped);
  if (options.output == "json") {
    PrintJson({{"path", written}, {"bytes", response.bytes()}, {"steps", response.steps()}});
  } else {
    std::cout << "Backed up the metadata to " << (escaped ? "\"" + written + "\"" : written) << ": "
              << HumanSize(response.bytes()) << "\n";
  }
  return 0;
}

// Quarantine (issue 8)
int QuarantineCommand(Client& client, const Options& options) {
  const std::string action = options.args.size() > 1 ? options.args[1] : "";
  if (action == "list") {
    ExpectArgs(options, 1, 1, "quarantine list");
    pb::QuarantineListResponse response = client.Call(&pb::Admin::Stub::QuarantineList, {});
    if (options.output == "json") {
      Json entries = Json::array();
      for (const pb::QuarantineEntry& entry : response.entries()) {
        entries.push_back({{"name", entry.name()},
                           {"driver_id", entry.driver_id()},
                           {"kind", entry.kind()},
                           {"reason", entry.reason()},
                           {"quarantined_unix", entry.quarantined_unix()},
                           {"bytes", entry.bytes()},
                           {"label", entry.label()}});
      }
      PrintJson({{"entries", entries}});
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    for (const pb::QuarantineEntry& entry : response.entries()) {
      rows.push_back({entry.name(), entry.kind(), HumanSize(entry.bytes()),
                      entry.label().empty() ? "no" : "yes", entry.reason()});
    }
    PrintTable({"ENTRY", "KIND", "SIZE", "LABEL", "REASON"}, rows);
    return 0;
  }
  if (action == "restore") {
    ExpectArgs(options, 2, 2, "quarantine restore ENTRY [--volume NAME]");
    pb::QuarantineRestoreRequest request;
    request.set_name(options.args[2]);
    if (options.volume) request.set_volume_name(*options.volume);
    pb::QuarantineRestoreResponse response =
        client.Call(&pb::Admin::Stub::QuarantineRestore, request);
    if (options.output == "json") {
      PrintJson({{"volume_id", response.volume_id()},
                 {"volume_name", response.volume_name()},
                 {"chain_id", response.chain_id()},
                 {"note", response.note()}});
      return 0;
    }
    if (!response.volume_id().empty())
      std::cout << "Restored as volume " << response.volume_id() << " (" << response.volume_name()
                << ")\n";
    if (!response.chain_id().empty()) std::cout << "Layer " << response.chain_id() << "\n";
    if (!response.note().empty()) std::cout << "Note: " << response.note() << "\n";
    return 0;
  }
  if (action == "purge") {
    ExpectArgs(options, 2, 2, "quarantine purge ENTRY");
    pb::QuarantinePurgeRequest request;
    request.set_name(options.args[2]);
    pb::QuarantinePurgeResponse response = client.Call(&pb::Admin::Stub::QuarantinePurge, request);
    if (options.output == "json") {
      PrintJson({{"purged", options.args[2]}, {"bytes", response.bytes()}});
    } else {
      std::cout << "Purged " << options.args[2] << " (" << HumanSize(response.bytes()) << ")\n";
    }
    return 0;
  }
  throw UsageError{"quarantine takes list, restore or purge, not \"" + action + "\""};
}

int Run(const Options& options) {
  if (options.help || options.args.empty() || options.args[0] == "help") {
    if (options.args.empty() && !options.help) {
      std::cerr << kUsage;
      return 2;
    }
    std::cout << kUsage;
    return 0;
  }
  const std::string& command = options.args[0];
  if (command == "dm-pool") return DmPool(options);
  using Handler = int (*)(Client&, const Options&);
  static const std::map<std::string, Handler> kCommands = {{"import", Import},
                                                           {"images", Images},
                                                           {"layers", Layers},
                                                           {"volumes", Volumes},
                                                           {"inspect", Inspect},
                                                           {"rm", Remove},
                                                           {"gc", Gc},
                                                           {"version", Version},
                                                           {"commit", Commit},
                                                           {"rollback", Rollback},
                                                           {"snapshots", Snapshots},
                                                           {"history", History},
                                                           {"diff", Diff},
                                                           {"save", Save},
                                                           {"check", Check},
                                                           {"backup", Backup},
                                                           {"quarantine", QuarantineCommand}};
  auto it = kCommands.find(command);
  if (it == kCommands.end()) throw UsageError{"unknown command \"" + command + "\""};
  // -o names the output file of save and the output format of everything else.
  if (command != "save" && options.output != "table" && options.output != "json")
    throw UsageError{"-o must be table or json, not \"" + options.output + "\""};
  if (!options.tags.empty() && command != "commit" && command != "save")
    throw UsageError{"--tag is a flag of commit and save"};
  if (options.message && command != "commit") throw UsageError{"-m is a flag of commit"};
  if (options.volume && command != "snapshots" && command != "quarantine")
    throw UsageError{"--volume is a flag of snapshots and quarantine restore"};
  if (options.format && command != "save") throw UsageError{"--format is a flag of save"};
  if (options.no_trunc && command != "history" && command != "images" && command != "layers" &&
      command != "snapshots" && command != "gc" && command != "import" && command != "commit" &&
      command != "save" && command != "rollback")
    throw UsageError{"--no-trunc is a flag of the commands that print ids"};
  g_full_ids = options.no_trunc;
  if (options.quiet && command != "images") throw UsageError{"-q is a flag of images"};
  if (!options.filters.empty() && command != "images")
    throw UsageError{"--filter is a flag of images"};
  if (options.name && command != "import") throw UsageError{"--name is a flag of import"};
  if (options.tree && command != "layers") throw UsageError{"--tree is a flag of layers"};
  if (options.dry_run && command != "gc") throw UsageError{"--dry-run is a flag of gc"};
  if (options.repair && command != "check") throw UsageError{"--repair is a flag of check"};
  Client client(options.endpoint);
  return it->second(client, options);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(ParseArgs(argc, argv));
  } catch (const UsageError& error) {
    std::cerr << "stratactl: " << error.message << " (see `stratactl help`)\n";
    return 2;
  } catch (const CallError& error) {
    std::cerr << "stratactl: " << CodeName(error.status.error_code()) << ": "
              << error.status.error_message() << "\n";
    if (!error.hint.empty()) std::cerr << "hint: " << error.hint << "\n";
    return 1;
  }
}
