#include "src/store/sqlite.hpp"

#include <utility>

namespace lull {

sqlite_stmt::sqlite_stmt(sqlite3* db, std::string_view sql, sqlite_error* err) {
  int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) {
    stmt_ = nullptr;
    if (err != nullptr)
      *err = {rc, sqlite3_errmsg(db)};
  }
}

sqlite_stmt::~sqlite_stmt() {
  if (stmt_ != nullptr)
    sqlite3_finalize(stmt_);
}

sqlite_stmt::sqlite_stmt(sqlite_stmt&& other) noexcept
  : stmt_(std::exchange(other.stmt_, nullptr)) {}

sqlite_stmt& sqlite_stmt::operator=(sqlite_stmt&& other) noexcept {
  if (this != &other) {
    if (stmt_ != nullptr)
      sqlite3_finalize(stmt_);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

sqlite_stmt& sqlite_stmt::bind(int idx, std::int64_t v) {
  sqlite3_bind_int64(stmt_, idx, v);
  return *this;
}
sqlite_stmt& sqlite_stmt::bind(int idx, double v) {
  sqlite3_bind_double(stmt_, idx, v);
  return *this;
}
sqlite_stmt& sqlite_stmt::bind(int idx, std::string_view v) {
  sqlite3_bind_text(stmt_, idx, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}
sqlite_stmt& sqlite_stmt::bind_null(int idx) {
  sqlite3_bind_null(stmt_, idx);
  return *this;
}

int sqlite_stmt::step() { return sqlite3_step(stmt_); }

int sqlite_stmt::exec() {
  int rc = sqlite3_step(stmt_);
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  return rc;
}

void sqlite_stmt::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::string sqlite_stmt::text(int col) const {
  auto* p = sqlite3_column_text(stmt_, col);
  return p ? std::string(reinterpret_cast<const char*>(p),
                         static_cast<size_t>(sqlite3_column_bytes(stmt_, col)))
           : std::string();
}

sqlite_db::~sqlite_db() {
  if (db_ != nullptr)
    sqlite3_close_v2(db_);
}

sqlite_db::sqlite_db(sqlite_db&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

sqlite_db& sqlite_db::operator=(sqlite_db&& other) noexcept {
  if (this != &other) {
    if (db_ != nullptr)
      sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

sqlite_error sqlite_db::open(const std::string& path, int flags) {
  int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    sqlite_error err{rc, db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc)};
    if (db_ != nullptr) {
      sqlite3_close_v2(db_);
      db_ = nullptr;
    }
    return err;
  }
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, 2000);
  return {};
}

sqlite_error sqlite_db::exec(const char* sql) {
  char* msg = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &msg);
  sqlite_error err;
  if (rc != SQLITE_OK) {
    err = {rc, msg ? msg : sqlite3_errstr(rc)};
  }
  sqlite3_free(msg);
  return err;
}

} // namespace lull
