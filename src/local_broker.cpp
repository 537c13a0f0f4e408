#include "src/local_broker.hpp"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "src/process.hpp"
#include "src/service/notify.hpp"

#ifndef LULL_BROKER_CONFIG_DIR
#  define LULL_BROKER_CONFIG_DIR "/usr/share/lull/broker-config"
#endif

namespace lull {

std::string broker_config_dir(const std::string& configured) {
  if (!configured.empty())
    return configured;
  std::error_code ec;
  // An installed lulld (a package, or one unpacked anywhere) uses the configs
  // shipped beside it: <prefix>/bin/lulld -> <prefix>/share/lull/broker-config.
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto shipped = exe.parent_path().parent_path() / "share" / "lull" / "broker-config";
    if (std::filesystem::exists(shipped / "local.conf", ec))
      return shipped.string();
  }
  if (std::filesystem::exists(LULL_BROKER_CONFIG_DIR "/local.conf", ec))
    return LULL_BROKER_CONFIG_DIR;
  return "/usr/share/lull/broker-config";
}

std::unique_ptr<local_broker> local_broker::start(const std::string& conf_path, int port,
                                                  std::string* err) {
  std::ifstream in(conf_path);
  if (!in) {
    if (err)
      *err = "cannot read broker config " + conf_path;
    return nullptr;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto conf_dir = std::filesystem::absolute(conf_path).parent_path().string();

  std::unique_ptr<local_broker> b(new local_broker);
  b->port_ = port == 0 ? free_loopback_port() : port;
  char tmpl[] = "/tmp/lull-broker-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    if (err)
      *err = "cannot create a directory for the broker";
    return nullptr;
  }
  b->dir_ = tmpl;
  b->log_path_ = b->dir_ + "/mosquitto.log";

  std::ostringstream out;
  std::string line;
  bool listener_done = false;
  while (std::getline(text, line)) {
    if (!listener_done && line.rfind("listener ", 0) == 0) {
      line = "listener " + std::to_string(b->port_) + " 127.0.0.1";
      listener_done = true;
    }
    for (size_t pos; (pos = line.find("@CONFIG_DIR@")) != std::string::npos;)
      line.replace(pos, 12, conf_dir);
    for (size_t pos; (pos = line.find("@RUN_DIR@")) != std::string::npos;)
      line.replace(pos, 9, b->dir_);
    out << line << '\n';
  }
  if (!listener_done) {
    if (err)
      *err = conf_path + " has no 'listener' line";
    return nullptr;
  }
  b->conf_ = b->dir_ + "/mosquitto.conf";
  std::ofstream(b->conf_) << out.str();
  if (!b->launch(err))
    return nullptr;
  return b;
}

bool local_broker::launch(std::string* err) {
  auto exe = find_executable("mosquitto");
  if (!exe) {
    if (err)
      *err = "mosquitto is not installed (apt-get install mosquitto)";
    return false;
  }
  spawn_options o;
  o.argv = {*exe, "-c", conf_};
  o.stdout_path = log_path_;
  o.stderr_path = log_path_;
  o.new_process_group = true; // a Ctrl-C in the terminal reaches lulld, which stops it
  // Mosquitto built with systemd support reports READY=1 itself: lulld's
  // service manager would hear a second, unexpected service.
  o.drop_env = service::own_variables();
  auto pid = spawn(o, err);
  if (!pid)
    return false;
  pid_ = *pid;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < deadline) {
    if (port_accepts(port_))
      return true;
    if (auto st = wait_for_exit(pid_, std::chrono::milliseconds(10))) {
      std::ifstream log(log_path_);
      std::stringstream ss;
      ss << log.rdbuf();
      if (err)
        *err = "mosquitto exited with status " + std::to_string(exit_code_of(*st))
               + " on port " + std::to_string(port_) + ": " + ss.str();
      pid_ = -1;
      return false;
    }
  }
  if (err)
    *err = "mosquitto did not accept connections on port " + std::to_string(port_)
           + " within 5 s";
  stop();
  return false;
}

void local_broker::stop() {
  if (pid_ <= 0)
    return;
  ::kill(pid_, SIGTERM);
  if (!wait_for_exit(pid_, std::chrono::seconds(2))) {
    ::kill(pid_, SIGKILL);
    wait_for_exit(pid_, std::chrono::seconds(2));
  }
  pid_ = -1;
}

bool local_broker::restart(std::string* err) {
  stop();
  return launch(err);
}

bool local_broker::write_uri_file(const std::string& path, std::string* err) {
  // Written beside, then renamed: a reader never sees half a URI.
  auto tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  auto text = uri() + "\n";
  bool ok = fd >= 0 && ::fchmod(fd, 0644) == 0 // whatever the umask
            && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  int saved = errno;
  if (fd >= 0)
    ::close(fd);
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    saved = errno;
    ok = false;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    if (err)
      *err = "cannot write " + path + ": " + std::strerror(saved);
    return false;
  }
  uri_file_ = path;
  return true;
}

local_broker::~local_broker() {
  stop();
  if (!uri_file_.empty())
    ::unlink(uri_file_.c_str());
  std::error_code ec;
  if (!dir_.empty())
    std::filesystem::remove_all(dir_, ec);
}

} // namespace lull
