#pragma once
/// A thin RAII layer over SQLite: a connection and prepared statements. Every
/// statement lull runs is prepared and bound; nothing is spliced into SQL.
/// Failures are values (sqlite_error), never exceptions.

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lull {

struct sqlite_error {
  int code = SQLITE_OK;
  std::string message;
  explicit operator bool() const { return code != SQLITE_OK && code != SQLITE_DONE && code != SQLITE_ROW; }
};

class sqlite_stmt {
public:
  sqlite_stmt() = default;
  sqlite_stmt(sqlite3* db, std::string_view sql, sqlite_error* err);
  ~sqlite_stmt();
  sqlite_stmt(sqlite_stmt&& other) noexcept;
  sqlite_stmt& operator=(sqlite_stmt&& other) noexcept;
  sqlite_stmt(const sqlite_stmt&) = delete;
  sqlite_stmt& operator=(const sqlite_stmt&) = delete;

  explicit operator bool() const { return stmt_ != nullptr; }

  sqlite_stmt& bind(int idx, std::int64_t v);
  sqlite_stmt& bind(int idx, int v) { return bind(idx, static_cast<std::int64_t>(v)); }
  sqlite_stmt& bind(int idx, double v);
  sqlite_stmt& bind(int idx, std::string_view v);
  sqlite_stmt& bind(int idx, const std::string& v) { return bind(idx, std::string_view(v)); }
  sqlite_stmt& bind(int idx, const char* v) { return bind(idx, std::string_view(v)); }
  sqlite_stmt& bind_null(int idx);
  template <class T>
  sqlite_stmt& bind(int idx, const std::optional<T>& v) {
    return v ? bind(idx, *v) : bind_null(idx);
  }

  /// SQLITE_ROW, SQLITE_DONE or an error code.
  int step();
  /// Runs to completion (for statements without rows); returns the code.
  int exec();
  void reset();

  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string text(int col) const;

private:
  sqlite3_stmt* stmt_ = nullptr;
};

class sqlite_db {
public:
  sqlite_db() = default;
  ~sqlite_db();
  sqlite_db(sqlite_db&& other) noexcept;
  sqlite_db& operator=(sqlite_db&& other) noexcept;
  sqlite_db(const sqlite_db&) = delete;
  sqlite_db& operator=(const sqlite_db&) = delete;

  /// Opens (flags: SQLITE_OPEN_*); returns an error naming the path.
  sqlite_error open(const std::string& path, int flags);
  sqlite3* handle() const { return db_; }

  sqlite_stmt prepare(std::string_view sql, sqlite_error* err = nullptr) {
    return sqlite_stmt(db_, sql, err);
  }
  /// Runs fixed SQL text (schema, pragmas, BEGIN/COMMIT) with no parameters.
  sqlite_error exec(const char* sql);
  std::string last_error() const { return db_ ? sqlite3_errmsg(db_) : "no database"; }

private:
  sqlite3* db_ = nullptr;
};

} // namespace lull
