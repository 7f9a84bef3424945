#include "node/metadata.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/log.h"
#include "common/status_macros.h"

namespace strata::node {
namespace {

constexpr int kSchemaVersion = 3;  // 3: group snapshots

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS layers (
  chain_id TEXT PRIMARY KEY,
  diff_id TEXT NOT NULL,
  parent_chain_id TEXT NOT NULL,
  driver_id TEXT NOT NULL UNIQUE,
  size_bytes INTEGER NOT NULL,
  created_unix INTEGER NOT NULL,
  state TEXT NOT NULL,
  depth INTEGER NOT NULL,
  comment TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS layers_parent ON layers(parent_chain_id);
CREATE TABLE IF NOT EXISTS images (
  name TEXT PRIMARY KEY,
  chain_id TEXT NOT NULL,
  config_json TEXT NOT NULL,
  created_unix INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS volumes (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  request_fingerprint TEXT NOT NULL,
  capacity_bytes INTEGER NOT NULL,
  image TEXT NOT NULL,
  chain_id TEXT NOT NULL,
  active_id TEXT NOT NULL,
  state TEXT NOT NULL,
  pending TEXT NOT NULL,
  staging_path TEXT NOT NULL,
  ephemeral INTEGER NOT NULL,
  created_unix INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS volumes_name ON volumes(name);
CREATE TABLE IF NOT EXISTS snapshots (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  source_volume_id TEXT NOT NULL,
  chain_id TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  created_unix INTEGER NOT NULL,
  state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS publications (
  volume_id TEXT NOT NULL,
  target_path TEXT NOT NULL,
  read_only INTEGER NOT NULL,
  state TEXT NOT NULL,
  PRIMARY KEY (volume_id, target_path));
CREATE TABLE IF NOT EXISTS group_snapshots (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_unix INTEGER NOT NULL,
  state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS group_members (
  group_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  volume_id TEXT NOT NULL,
  snapshot_id TEXT NOT NULL,
  PRIMARY KEY (group_id, position));
)sql";

// SQLite's result codes mapped to what a caller can act on: a full disk is a normal state
// (RESOURCE_EXHAUSTED: free space and retry), a read-only store a precondition, a damaged file
// data loss (docs/operations.md says what to do).
absl::Status SqliteError(sqlite3* db, const std::string& what) {
  std::string message = absl::StrCat("metadata: ", what, ": ", sqlite3_errmsg(db));
  switch (sqlite3_extended_errcode(db) & 0xff) {
    case SQLITE_FULL:
      return absl::ResourceExhaustedError(
          absl::StrCat(message, " (the store's filesystem is full: free space and retry)"));
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
      return absl::FailedPreconditionError(message);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(
          absl::StrCat(message, " (the metadata file is damaged: see docs/operations.md)"));
    default:
      return absl::InternalError(message);
  }
}

}  // namespace

// Prepared statements kept for reuse, keyed by their SQL text. Preparing a statement costs more
// than running most of the store's queries, and a mount-path call runs several. Used only under
// Metadata::mutex_; a statement in use is taken out, so a nested query with the same text (a
// call inside InTransaction) prepares its own.
class Metadata::StatementCache {
 public:
  explicit StatementCache(sqlite3* db) : db_(db) {}
  ~StatementCache() {
    for (auto& [sql, statements] : idle_)
      for (sqlite3_stmt* statement : statements) sqlite3_finalize(statement);
  }
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  sqlite3* db() const { return db_; }

  // A statement for `sql`, reused or prepared now (nullptr, with the error, when it cannot be).
  sqlite3_stmt* Take(const std::string& sql, absl::Status* status) {
    auto it = idle_.find(sql);
    if (it != idle_.end() && !it->second.empty()) {
      sqlite3_stmt* statement = it->second.back();
      it->second.pop_back();
      return statement;
    }
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v3(db_, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &statement, nullptr) !=
        SQLITE_OK) {
      *status = SqliteError(db_, absl::StrCat("prepare `", sql, "`"));
      sqlite3_finalize(statement);
      return nullptr;
    }
    return statement;
  }

  // Puts `statement` back, reset and unbound, for the next Take of `sql`.
  void Give(const std::string& sql, sqlite3_stmt* statement) {
    if (statement == nullptr) return;
    sqlite3_reset(statement);
    sqlite3_clear_bindings(statement);
    std::vector<sqlite3_stmt*>& idle = idle_[sql];
    if (idle.size() < kMaxIdlePerText) {
      idle.push_back(statement);
    } else {
      sqlite3_finalize(statement);
    }
  }

 private:
  static constexpr size_t kMaxIdlePerText = 4;
  sqlite3* db_;
  std::unordered_map<std::string, std::vector<sqlite3_stmt*>> idle_;
};

namespace {

// A prepared statement with positional binds, taken from the connection's cache and given back
// (reset) on destruction.
class Statement {
 public:
  Statement(Metadata::StatementCache& cache, std::string sql)
      : cache_(cache), db_(cache.db()), sql_(std::move(sql)) {
    stmt_ = cache_.Take(sql_, &status_);
  }
  ~Statement() { cache_.Give(sql_, stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& Bind(const std::string& value) {
    sqlite3_bind_text(stmt_, ++bound_, value.data(), static_cast<int>(value.size()),
                      SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int64_t value) {
    sqlite3_bind_int64(stmt_, ++bound_, value);
    return *this;
  }

  // Steps once: true with a row, false when done.
  absl::StatusOr<bool> Step() {
    RETURN_IF_ERROR(status_);
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, "step");
  }
  absl::Status Run() {
    ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }

  std::string Text(int column) const {
    const unsigned char* text = sqlite3_column_text(stmt_, column);
    return text ? std::string(reinterpret_cast<const char*>(text),
                              sqlite3_column_bytes(stmt_, column))
                : std::string();
  }
  int64_t Int(int column) const { return sqlite3_column_int64(stmt_, column); }

 private:
  Metadata::StatementCache& cache_;
  sqlite3* db_;
  std::string sql_;
  sqlite3_stmt* stmt_ = nullptr;
  absl::Status status_;
  int bound_ = 0;
};

// Every row `list` yields, each made by `read` (a ReadVolume, ReadLayer, ...).
template <typename Read>
auto ReadAll(Statement& list, Read read) -> absl::StatusOr<std::vector<decltype(read(list))>> {
  std::vector<decltype(read(list))> rows;
  while (true) {
    ASSIGN_OR_RETURN(bool row, list.Step());
    if (!row) break;
    rows.push_back(read(list));
  }
  return rows;
}

constexpr char kLayerColumns[] =
    "chain_id, diff_id, parent_chain_id, driver_id, size_bytes, created_unix, state, depth, "
    "comment";
LayerRecord ReadLayer(const Statement& row) {
  return LayerRecord{row.Text(0), row.Text(1), row.Text(2), row.Text(3),
                     row.Int(4),  row.Int(5),  row.Text(6), static_cast<int>(row.Int(7)),
                     row.Text(8)};
}

constexpr char kSnapshotColumns[] =
    "id, name, source_volume_id, chain_id, size_bytes, created_unix, state";
SnapshotRecord ReadSnapshot(const Statement& row) {
  return SnapshotRecord{row.Text(0), row.Text(1), row.Text(2), row.Text(3),
                        row.Int(4),  row.Int(5),  row.Text(6)};
}

constexpr char kVolumeColumns[] =
    "id, name, request_fingerprint, capacity_bytes, image, chain_id, active_id, state, pending, "
    "staging_path, ephemeral, created_unix";
VolumeRecord ReadVolume(const Statement& row) {
  VolumeRecord volume;
  volume.id = row.Text(0);
  volume.name = row.Text(1);
  volume.request_fingerprint = row.Text(2);
  volume.capacity_bytes = row.Int(3);
  volume.image = row.Text(4);
  volume.chain_id = row.Text(5);
  volume.active_id = row.Text(6);
  volume.state = row.Text(7);
  volume.pending = row.Text(8);
  volume.staging_path = row.Text(9);
  volume.ephemeral = row.Int(10) != 0;
  volume.created_unix = row.Int(11);
  return volume;
}

std::string ToBase36(int64_t value) {
  static constexpr char kDigits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string out;
  do {
    out.insert(out.begin(), kDigits[value % 36]);
    value /= 36;
  } while (value > 0);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Metadata>> Metadata::Open(const std::string& path,
                                                         int64_t reserve_bytes) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    absl::Status status = SqliteError(db, absl::StrCat("open ", path));
    sqlite3_close(db);
    return status;
  }
  std::unique_ptr<Metadata> metadata(new Metadata(db, path, reserve_bytes));
  sqlite3_extended_result_codes(db, 1);
  // Every write transaction ends here; one under synchronous=FULL syncs the WAL.
  sqlite3_commit_hook(
      db,
      [](void* self) -> int {
        auto* store = static_cast<Metadata*>(self);
        if (!store->volatile_commit_) ++store->durable_commits_;
        return 0;
      },
      metadata.get());
  // A full disk at start-up: give SQLite the reserve so recovery can record what it resolves.
  metadata->MakeRoomForDelete();
  RETURN_IF_ERROR(metadata->Migrate());
  metadata->RestoreReserve();
  return metadata;
}

Metadata::Metadata(sqlite3* db, std::string path, int64_t reserve_bytes)
    : db_(db),
      statements_(std::make_unique<StatementCache>(db)),
      path_(std::move(path)),
      reserve_bytes_(reserve_bytes) {}

std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";  // "/strata.db": the root, not the working directory
  return path.substr(0, slash);
}

namespace {
int64_t FreeBytesBeside(const std::string& path) {
  struct statvfs fs;
  if (statvfs(DirectoryOf(path).c_str(), &fs) != 0) return -1;
  return static_cast<int64_t>(fs.f_bavail) * static_cast<int64_t>(fs.f_frsize);
}
}  // namespace

void Metadata::MakeRoomForDelete() {
  if (reserve_bytes_ <= 0) return;
  std::lock_guard<std::mutex> lock(reserve_mutex_);
  int64_t free_bytes = FreeBytesBeside(path_);
  if (free_bytes < 0 || free_bytes >= 2 * reserve_bytes_) return;
  std::string reserve = path_ + ".reserve";
  if (unlink(reserve.c_str()) == 0) {
    LogWarning("store filesystem nearly full: released the metadata reserve so deletes can work",
               {{"free_bytes", std::to_string(free_bytes)},
                {"reserve_bytes", std::to_string(reserve_bytes_)},
                {"path", reserve}});
  }
}

void Metadata::RestoreReserve() {
  if (reserve_bytes_ <= 0) return;
  std::lock_guard<std::mutex> lock(reserve_mutex_);
  std::string reserve = path_ + ".reserve";
  struct stat st;
  if (stat(reserve.c_str(), &st) == 0 && st.st_blocks * 512 >= reserve_bytes_) return;
  if (FreeBytesBeside(path_) < 4 * reserve_bytes_) return;  // not yet: leave the room to deletes
  int fd = open(reserve.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return;
  // posix_fallocate really allocates (a sparse file would reserve nothing).
  int rc = posix_fallocate(fd, 0, reserve_bytes_);
  if (rc == 0) rc = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  if (rc != 0) {
    (void)unlink(reserve.c_str());
    LogWarning("cannot reserve space for metadata", {{"path", reserve}, {"errno", strerror(rc)}});
  }
}

absl::StatusOr<bool> Metadata::LooksNew() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement get(*statements_, "SELECT count(*) FROM sequences WHERE name='driver_id'");
  ASSIGN_OR_RETURN(bool row, get.Step());
  return !row || get.Int(0) == 0;
}

absl::Status Metadata::ReserveDriverIdsThrough(const std::string& id) {
  int64_t value = 0;
  if (id.empty() || id.size() > 12) return absl::OkStatus();  // not one of ours
  for (char c : id) {
    int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'z' ? c - 'a' + 10 : -1;
    if (digit < 0) return absl::OkStatus();
    value = value * 36 + digit;
  }
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement current(*statements_, "SELECT value FROM sequences WHERE name='driver_id'");
  ASSIGN_OR_RETURN(bool row, current.Step());
  if (row && current.Int(0) >= value) return absl::OkStatus();  // nothing to write
  Statement put(*statements_,
                "INSERT INTO sequences(name, value) VALUES('driver_id', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)");
  put.Bind(value);
  return put.Run();
}

absl::StatusOr<Metadata::BackupResult> Metadata::Backup(const std::string& destination,
                                                        const BackupOptions& options) {
  if (options.pages_per_step <= 0) return absl::InvalidArgumentError("pages_per_step must be > 0");
  // Create the file ourselves (O_EXCL: never replace anything), then let SQLite fill it.
  int fd = open(destination.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return ErrnoStatus(errno, "create backup file", destination);
  close(fd);
  sqlite3* target = nullptr;
  absl::Status status;
  BackupResult result;
  if (sqlite3_open_v2(destination.c_str(), &target, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    status = SqliteError(target, absl::StrCat("open ", destination));
  } else {
    sqlite3_backup* backup = nullptr;
    {
      std::lock_guard<std::recursive_mutex> lock(mutex_);
      backup = sqlite3_backup_init(target, "main", db_, "main");
    }
    if (backup == nullptr) {
      status = SqliteError(target, "backup init");
    } else {
      int rc = SQLITE_OK;
      while (true) {
        {
          // One step under the mutex: the connection is shared with every call.
          std::lock_guard<std::recursive_mutex> lock(mutex_);
          rc = sqlite3_backup_step(backup, options.pages_per_step);
        }
        ++result.steps;
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) break;
        if (options.between_steps) {
          options.between_steps(sqlite3_backup_remaining(backup), sqlite3_backup_pagecount(backup));
        }
        if (rc != SQLITE_OK) sqlite3_sleep(10);  // busy: another connection writes; retry
      }
      {
        std::lock_guard<std::recursive_mutex> lock(mutex_);
        sqlite3_backup_finish(backup);
      }
      if (rc != SQLITE_DONE) status = SqliteError(target, "backup");
    }
  }
  if (status.ok() &&
      sqlite3_exec(target, "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    status = SqliteError(target, "backup journal mode");
  }
  sqlite3_close(target);
  if (!status.ok()) {
    (void)unlink(destination.c_str());
    return status;
  }
  int sync_fd = open(destination.c_str(), O_RDONLY | O_CLOEXEC);
  if (sync_fd >= 0) {
    (void)fsync(sync_fd);
    struct stat st;
    if (fstat(sync_fd, &st) == 0) result.bytes = static_cast<int64_t>(st.st_size);
    close(sync_fd);
  }
  // The new name must survive a power cut too.
  int dir_fd = open(DirectoryOf(destination).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    (void)fsync(dir_fd);
    close(dir_fd);
  }
  return result;
}
Metadata::~Metadata() {
  statements_.reset();  // finalized first: a connection with live statements does not close
  sqlite3_close(db_);
}

absl::Status Metadata::Migrate() {
  // WAL + synchronous=FULL: a committed transaction survives power loss, and readers never
  // block the writer. busy_timeout covers stratactl-free but multi-threaded access.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA busy_timeout=10000", "PRAGMA foreign_keys=ON"}) {
    if (sqlite3_exec(db_, pragma, nullptr, nullptr, nullptr) != SQLITE_OK)
      return SqliteError(db_, pragma);
  }
  Statement version(*statements_, "PRAGMA user_version");
  ASSIGN_OR_RETURN(bool has_row, version.Step());
  int64_t current = has_row ? version.Int(0) : 0;
  if (current > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "metadata schema version ", current, " is newer than this strata-csi understands (",
        kSchemaVersion, "); run the newer version"));
  }
  if (current == 1 && sqlite3_exec(db_,
                                   "ALTER TABLE layers ADD COLUMN comment TEXT NOT NULL "
                                   "DEFAULT ''",
                                   nullptr, nullptr, nullptr) != SQLITE_OK) {
    return SqliteError(db_, "migrate schema 1 -> 2");
  }
  // A current store is left as it is: start-up must not need to write (a full disk would
  // otherwise keep the plugin from starting, and with it every delete that frees space).
  if (current == kSchemaVersion) return absl::OkStatus();
  if (sqlite3_exec(db_, kSchema, nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqliteError(db_, "create schema");
  std::string set_version = absl::StrCat("PRAGMA user_version=", kSchemaVersion);
  if (sqlite3_exec(db_, set_version.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqliteError(db_, "set schema version");
  return absl::OkStatus();
}

absl::Status Metadata::InTransaction(const std::function<absl::Status()>& body) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  // Nested: join the transaction already open on this thread.
  if (!sqlite3_get_autocommit(db_)) return body();
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqliteError(db_, "begin");
  absl::Status status = body();
  if (status.ok()) {
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) == SQLITE_OK)
      return absl::OkStatus();
    status = SqliteError(db_, "commit");
  }
  sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  return status;
}

absl::Status Metadata::InVolatileTransaction(const std::function<absl::Status()>& body) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  if (!sqlite3_get_autocommit(db_)) return body();
  // In WAL mode synchronous=NORMAL never corrupts the database: a commit lost to a power loss
  // is rolled back as a whole at the next open. Per connection, so set and reset around it.
  if (sqlite3_exec(db_, "PRAGMA synchronous=NORMAL", nullptr, nullptr, nullptr) != SQLITE_OK)
    return SqliteError(db_, "synchronous=NORMAL");
  volatile_commit_ = true;
  absl::Status status = InTransaction(body);
  volatile_commit_ = false;
  if (sqlite3_exec(db_, "PRAGMA synchronous=FULL", nullptr, nullptr, nullptr) != SQLITE_OK) {
    // Never leave the connection in the weaker mode: every later commit would be volatile.
    absl::Status reset = SqliteError(db_, "synchronous=FULL");
    LogError("metadata: could not restore synchronous=FULL", {{"error", reset.ToString()}});
    std::abort();
  }
  return status;
}

absl::StatusOr<std::string> Metadata::NewDriverId() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement next(*statements_,
                 "INSERT INTO sequences(name, value) VALUES('driver_id', 1) "
                 "ON CONFLICT(name) DO UPDATE SET value = value + 1 RETURNING value");
  ASSIGN_OR_RETURN(bool row, next.Step());
  if (!row) return absl::InternalError("metadata: driver id sequence returned nothing");
  return ToBase36(next.Int(0));
}

absl::Status Metadata::PutLayer(const LayerRecord& layer) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement put(*statements_, absl::StrCat("INSERT OR REPLACE INTO layers(", kLayerColumns,
                                           ") VALUES(?,?,?,?,?,?,?,?,?)")
                                  .c_str());
  put.Bind(layer.chain_id).Bind(layer.diff_id).Bind(layer.parent_chain_id).Bind(layer.driver_id);
  put.Bind(layer.size_bytes).Bind(layer.created_unix).Bind(layer.state);
  put.Bind(static_cast<int64_t>(layer.depth)).Bind(layer.comment);
  return put.Run();
}

absl::StatusOr<std::optional<LayerRecord>> Metadata::GetLayer(const std::string& chain_id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement get(*statements_,
                absl::StrCat("SELECT ", kLayerColumns, " FROM layers WHERE chain_id=?").c_str());
  get.Bind(chain_id);
  ASSIGN_OR_RETURN(bool row, get.Step());
  if (!row) return std::optional<LayerRecord>();
  return std::optional<LayerRecord>(ReadLayer(get));
}

absl::StatusOr<std::vector<LayerRecord>> Metadata::ListLayers() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement list(
      *statements_,
      absl::StrCat("SELECT ", kLayerColumns, " FROM layers ORDER BY depth, chain_id").c_str());
  return ReadAll(list, ReadLayer);
}

absl::Status Metadata::DeleteLayer(const std::string& chain_id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement del(*statements_, "DELETE FROM layers WHERE chain_id=?");
  del.Bind(chain_id);
  return del.Run();
}

absl::StatusOr<std::vector<LayerRecord>> Metadata::ChainOf(const std::string& chain_id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::vector<LayerRecord> chain;
  // One recursive query instead of one lookup per link: chains can be hundreds deep.
  Statement walk(*statements_, absl::StrCat("WITH RECURSIVE chain(cid, n) AS ("
                                            "  SELECT ?, 0 UNION ALL"
                                            "  SELECT l.parent_chain_id, chain.n + 1 FROM layers l"
                                            "  JOIN chain ON l.chain_id = chain.cid"
                                            "  WHERE l.parent_chain_id != '')"
                                            " SELECT ",
                                            kLayerColumns,
                                            " FROM chain JOIN layers ON layers.chain_id = chain.cid"
                                            " ORDER BY chain.n")
                                   .c_str());
  walk.Bind(chain_id);
  while (true) {
    ASSIGN_OR_RETURN(bool row, walk.Step());
    if (!row) break;
    chain.push_back(ReadLayer(walk));
  }
  if (chain.empty() || chain.back().parent_chain_id != "" ||
      static_cast<int>(chain.size()) != chain.front().depth) {
    return absl::NotFoundError(
        absl::StrCat("metadata: chain of layer ", chain_id, " is missing or incomplete"));
  }
  return chain;
}

absl::StatusOr<int> Metadata::LayerReferences(const std::string& chain_id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement count(*statements_,
                  "SELECT (SELECT COUNT(*) FROM images WHERE chain_id=?1)"
                  " + (SELECT COUNT(*) FROM volumes WHERE chain_id=?1)"
                  " + (SELECT COUNT(*) FROM snapshots WHERE chain_id=?1)"
                  " + (SELECT COUNT(*) FROM layers WHERE parent_chain_id=?1)");
  count.Bind(chain_id);
  ASSIGN_OR_RETURN(bool row, count.Step());
  return row ? static_cast<int>(count.Int(0)) : 0;
}

absl::Status Metadata::PutImage(const ImageRecord& image) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement put(*statements_,
                "INSERT OR REPLACE INTO images(name, chain_id, config_json, created_unix)"
                " VALUES(?,?,?,?)");
  put.Bind(image.name).Bind(image.chain_id).Bind(image.config_json).Bind(image.created_unix);
  return put.Run();
}

absl::StatusOr<std::optional<ImageRecord>> Metadata::GetImage(const std::string& name) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement get(*statements_,
                "SELECT name, chain_id, config_json, created_unix FROM images WHERE name=?");
  get.Bind(name);
  ASSIGN_OR_RETURN(bool row, get.Step());
  if (!row) return std::optional<ImageRecord>();
  return std::optional<ImageRecord>(ImageRecord{get.Text(0), get.Text(1), get.Text(2), get.Int(3)});
}

absl::StatusOr<std::vector<ImageRecord>> Metadata::ListImages() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement list(*statements_,
                 "SELECT name, chain_id, config_json, created_unix FROM images ORDER BY name");
  return ReadAll(list, [](Statement& row) {
    return ImageRecord{row.Text(0), row.Text(1), row.Text(2), row.Int(3)};
  });
}

absl::Status Metadata::DeleteImage(const std::string& name) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement del(*statements_, "DELETE FROM images WHERE name=?");
  del.Bind(name);
  return del.Run();
}

absl::Status Metadata::PutVolume(const VolumeRecord& volume) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement put(*statements_, absl::StrCat("INSERT OR REPLACE INTO volumes(", kVolumeColumns,
                                           ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?)")
                                  .c_str());
  put.Bind(volume.id).Bind(volume.name).Bind(volume.request_fingerprint);
  put.Bind(volume.capacity_bytes).Bind(volume.image).Bind(volume.chain_id);
  put.Bind(volume.active_id).Bind(volume.state).Bind(volume.pending).Bind(volume.staging_path);
  put.Bind(static_cast<int64_t>(volume.ephemeral ? 1 : 0)).Bind(volume.created_unix);
  return put.Run();
}

absl::StatusOr<std::optional<VolumeRecord>> Metadata::GetVolume(const std::string& id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement get(*statements_,
                absl::StrCat("SELECT ", kVolumeColumns, " FROM volumes WHERE id=?").c_str());
  get.Bind(id);
  ASSIGN_OR_RETURN(bool row, get.Step());
  if (!row) return std::optional<VolumeRecord>();
  return std::optional<VolumeRecord>(ReadVolume(get));
}

absl::StatusOr<std::optional<VolumeRecord>> Metadata::GetVolumeByName(const std::string& name) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement get(*statements_, absl::StrCat("SELECT ", kVolumeColumns,
                                           " FROM volumes WHERE name=? AND ephemeral=0")
                                  .c_str());
  get.Bind(name);
  ASSIGN_OR_RETURN(bool row, get.Step());
  if (!row) return std::optional<VolumeRecord>();
  return std::optional<VolumeRecord>(ReadVolume(get));
}

absl::StatusOr<std::vector<VolumeRecord>> Metadata::ListVolumes() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement list(*statements_,
                 absl::StrCat("SELECT ", kVolumeColumns, " FROM volumes ORDER BY id").c_str());
  return ReadAll(list, ReadVolume);
}

absl::StatusOr<std::vector<VolumeRecord>> Metadata::ListVolumesFrom(
    const std::string& from_id, const std::vector<std::string>& states, int64_t limit) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  std::string placeholders;
  for (size_t i = 0; i < states.size(); ++i) placeholders += i ? ",?" : "?";
  Statement list(*statements_,
                 absl::StrCat("SELECT ", kVolumeColumns, " FROM volumes WHERE id >= ? AND ",
                              "state IN (", placeholders, ") ORDER BY id LIMIT ?")
                     .c_str());
  list.Bind(from_id);
  for (const std::string& state : states) list.Bind(state);
  list.Bind(limit);
  return ReadAll(list, ReadVolume);
}

absl::StatusOr<int64_t> Metadata::PromisedCapacityBytes() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement sum(*statements_, "SELECT COALESCE(SUM(capacity_bytes), 0) FROM volumes");
  ASSIGN_OR_RETURN(bool row, sum.Step());
  return row ? sum.Int(0) : int64_t{0};
}

absl::Status Metadata::DeleteVolume(const std::string& id) {
  return InTransaction([&]() -> absl::Status {
    Statement publications(*statements_, "DELETE FROM publications WHERE volume_id=?");
    publications.Bind(id);
    RETURN_IF_ERROR(publications.Run());
    Statement volume(*statements_, "DELETE FROM volumes WHERE id=?");
    volume.Bind(id);
    return volume.Run();
  });
}

absl::Status Metadata::PutSnapshot(const SnapshotRecord& snapshot) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement put(*statements_, absl::StrCat("INSERT OR REPLACE INTO snapshots(", kSnapshotColumns,
                                           ") VALUES(?,?,?,?,?,?,?)")
                                  .c_str());
  put.Bind(snapshot.id).Bind(snapshot.name).Bind(snapshot.source_volume_id);
  put.Bind(snapshot.chain_id).Bind(snapshot.size_bytes).Bind(snapshot.created_unix);
  put.Bind(snapshot.state);
  return put.Run();
}

absl::StatusOr<std::optional<SnapshotRecord>> Metadata::GetSnapshot(const std::string& id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement get(*statements_,
                absl::StrCat("SELECT ", kSnapshotColumns, " FROM snapshots WHERE id=?").c_str());
  get.Bind(id);
  ASSIGN_OR_RETURN(bool row, get.Step());
  if (!row) return std::optional<SnapshotRecord>();
  return std::optional<SnapshotRecord>(ReadSnapshot(get));
}

absl::StatusOr<std::optional<SnapshotRecord>> Metadata::GetSnapshotByName(const std::string& name) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement get(*statements_,
                absl::StrCat("SELECT ", kSnapshotColumns, " FROM snapshots WHERE name=?").c_str());
  get.Bind(name);
  ASSIGN_OR_RETURN(bool row, get.Step());
  if (!row) return std::optional<SnapshotRecord>();
  return std::optional<SnapshotRecord>(ReadSnapshot(get));
}

absl::StatusOr<std::vector<SnapshotRecord>> Metadata::ListSnapshots() {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement list(*statements_,
                 absl::StrCat("SELECT ", kSnapshotColumns, " FROM snapshots ORDER BY id").c_str());
  return ReadAll(list, ReadSnapshot);
}

absl::StatusOr<std::vector<SnapshotRecord>> Metadata::ListSnapshotsFrom(
    const std::string& from_id, const std::string& state, const std::string& source_volume_id,
    int64_t limit) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement list(*statements_,
                 absl::StrCat("SELECT ", kSnapshotColumns,
                              " FROM snapshots WHERE id >= ? AND state = ? AND (? = '' OR "
                              "source_volume_id = ?) ORDER BY id LIMIT ?")
                     .c_str());
  list.Bind(from_id).Bind(state).Bind(source_volume_id).Bind(source_volume_id).Bind(limit);
  return ReadAll(list, ReadSnapshot);
}

absl::Status Metadata::DeleteSnapshot(const std::string& id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement del(*statements_, "DELETE FROM snapshots WHERE id=?");
  del.Bind(id);
  return del.Run();
}

absl::Status Metadata::PutPublication(const PublicationRecord& publication) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement put(*statements_,
                "INSERT OR REPLACE INTO publications(volume_id, target_path, read_only, state)"
                " VALUES(?,?,?,?)");
  put.Bind(publication.volume_id).Bind(publication.target_path);
  put.Bind(static_cast<int64_t>(publication.read_only ? 1 : 0)).Bind(publication.state);
  return put.Run();
}

absl::StatusOr<std::vector<PublicationRecord>> Metadata::ListPublications(
    const std::string& volume_id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement list(*statements_,
                 "SELECT volume_id, target_path, read_only, state FROM publications"
                 " WHERE volume_id=? ORDER BY target_path");
  list.Bind(volume_id);
  return ReadAll(list, [](Statement& row) {
    return PublicationRecord{row.Text(0), row.Text(1), row.Int(2) != 0, row.Text(3)};
  });
}

absl::Status Metadata::DeletePublication(const std::string& volume_id,
                                         const std::string& target_path) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement del(*statements_, "DELETE FROM publications WHERE volume_id=? AND target_path=?");
  del.Bind(volume_id).Bind(target_path);
  return del.Run();
}

absl::Status Metadata::PutGroupSnapshot(const GroupSnapshotRecord& group) {
  return InTransaction([&]() -> absl::Status {
    Statement put(*statements_,
                  "INSERT OR REPLACE INTO group_snapshots(id, name, created_unix, state)"
                  " VALUES(?,?,?,?)");
    put.Bind(group.id).Bind(group.name).Bind(group.created_unix).Bind(group.state);
    RETURN_IF_ERROR(put.Run());
    Statement clear(*statements_, "DELETE FROM group_members WHERE group_id=?");
    clear.Bind(group.id);
    RETURN_IF_ERROR(clear.Run());
    for (size_t i = 0; i < group.members.size(); ++i) {
      Statement member(*statements_,
                       "INSERT INTO group_members(group_id, position, volume_id, snapshot_id)"
                       " VALUES(?,?,?,?)");
      member.Bind(group.id).Bind(static_cast<int64_t>(i));
      member.Bind(group.members[i].first).Bind(group.members[i].second);
      RETURN_IF_ERROR(member.Run());
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<GroupSnapshotRecord>> Metadata::GetGroupSnapshot(
    const std::string& id) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement get(*statements_,
                "SELECT id, name, created_unix, state FROM group_snapshots WHERE id=?");
  get.Bind(id);
  ASSIGN_OR_RETURN(bool row, get.Step());
  if (!row) return std::optional<GroupSnapshotRecord>();
  GroupSnapshotRecord group{get.Text(0), get.Text(1), get.Int(2), get.Text(3), {}};
  Statement members(*statements_,
                    "SELECT volume_id, snapshot_id FROM group_members WHERE group_id=?"
                    " ORDER BY position");
  members.Bind(id);
  ASSIGN_OR_RETURN(group.members, ReadAll(members, [](Statement& member) {
                     return std::make_pair(member.Text(0), member.Text(1));
                   }));
  return std::optional<GroupSnapshotRecord>(std::move(group));
}

absl::StatusOr<std::optional<GroupSnapshotRecord>> Metadata::GetGroupSnapshotByName(
    const std::string& name) {
  std::lock_guard<std::recursive_mutex> lock(mutex_);
  Statement get(*statements_, "SELECT id FROM group_snapshots WHERE name=?");
  get.Bind(name);
  ASSIGN_OR_RETURN(bool row, get.Step());
  if (!row) return std::optional<GroupSnapshotRecord>();
  return GetGroupSnapshot(get.Text(0));
}

absl::Status Metadata::DeleteGroupSnapshot(const std::string& id) {
  return InTransaction([&]() -> absl::Status {
    Statement members(*statements_, "DELETE FROM group_members WHERE group_id=?");
    members.Bind(id);
    RETURN_IF_ERROR(members.Run());
    Statement group(*statements_, "DELETE FROM group_snapshots WHERE id=?");
    group.Bind(id);
    return group.Run();
  });
}

}  // namespace strata::node
