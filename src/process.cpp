#include "src/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>

extern char** environ;

namespace lull {

namespace {

/// fork + exec for what posix_spawn cannot do (priorities, a cgroup). The
/// child only makes async-signal-safe calls; the parent learns of a failed
/// exec through a close-on-exec pipe.
std::optional<pid_t> spawn_forked(const spawn_options& opts, std::vector<char*>& argv,
                                  std::vector<char*>& envp, std::string* err) {
  auto exe = find_executable(opts.argv[0]);
  if (!exe) {
    if (err)
      *err = "cannot start " + opts.argv[0] + ": " + std::strerror(ENOENT);
    return std::nullopt;
  }
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) {
    if (err)
      *err = "cannot start " + opts.argv[0] + ": pipe: " + std::strerror(errno);
    return std::nullopt;
  }
  const char* stdin_path = opts.stdin_path.empty() ? nullptr : opts.stdin_path.c_str();
  const char* stdout_path = opts.stdout_path.empty() ? nullptr : opts.stdout_path.c_str();
  const char* stderr_path = opts.stderr_path.empty() ? nullptr : opts.stderr_path.c_str();
  const char* cg = opts.cgroup_procs.empty() ? nullptr : opts.cgroup_procs.c_str();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    if (err)
      *err = "cannot start " + opts.argv[0] + ": fork: " + std::strerror(errno);
    return std::nullopt;
  }
  if (pid == 0) {
    auto fail = [&](int code) {
      int e = errno;
      (void)code;
      (void)!::write(pipefd[1], &e, sizeof e);
      ::_exit(127);
    };
    if (cg) {
      // Before anything else, so every later child is in the group too.
      int fd = ::open(cg, O_WRONLY | O_CLOEXEC);
      if (fd >= 0) {
        (void)!::write(fd, "0", 1);
        ::close(fd);
      }
    }
    if (opts.new_process_group) {
      ::setpgid(0, 0);
      if (opts.foreground_tty) {
        ::signal(SIGTTOU, SIG_IGN);
        ::tcsetpgrp(0, ::getpid());
      }
    }
    if (opts.low_priority) {
      ::setpriority(PRIO_PROCESS, 0, 19);
      // ioprio_set(IOPRIO_WHO_PROCESS, self, IOPRIO_CLASS_IDLE << 13).
      ::syscall(SYS_ioprio_set, 1, 0, 3 << 13);
      sched_param sp{};
      sp.sched_priority = 0;
      ::sched_setscheduler(0, SCHED_IDLE, &sp); // best effort
    }
    sigset_t none;
    sigemptyset(&none);
    for (int sig = 1; sig < NSIG; ++sig)
      ::signal(sig, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    auto redirect = [&](const char* path, int target, int flags) {
      if (!path)
        return;
      int fd = ::open(path, flags, 0644);
      if (fd < 0)
        fail(0);
      if (fd != target) {
        ::dup2(fd, target);
        ::close(fd);
      }
    };
    redirect(stdin_path, 0, O_RDONLY);
    redirect(stdout_path, 1, O_WRONLY | O_CREAT | O_APPEND);
    redirect(stderr_path, 2, O_WRONLY | O_CREAT | O_APPEND);
    ::execve(exe->c_str(), argv.data(), envp.data());
    fail(0);
  }
  ::close(pipefd[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(pipefd[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  ::close(pipefd[0]);
  if (n == static_cast<ssize_t>(sizeof child_errno)) {
    ::waitpid(pid, nullptr, 0);
    if (err)
      *err = "cannot start " + opts.argv[0] + ": " + std::strerror(child_errno);
    return std::nullopt;
  }
  return pid;
}

} // namespace

std::optional<pid_t> spawn(const spawn_options& opts, std::string* err) {
  if (opts.argv.empty()) {
    if (err)
      *err = "no command";
    return std::nullopt;
  }
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view kv(*e);
    auto name = kv.substr(0, kv.find('='));
    if (std::find(opts.drop_env.begin(), opts.drop_env.end(), name) == opts.drop_env.end())
      env_store.emplace_back(kv);
  }
  for (auto& kv : opts.extra_env) {
    auto key = kv.substr(0, kv.find('=') + 1);
    env_store.erase(std::remove_if(env_store.begin(), env_store.end(),
                                   [&](auto& x) { return x.rfind(key, 0) == 0; }),
                    env_store.end());
    env_store.push_back(kv);
  }
  std::vector<char*> envp, argv;
  for (auto& s : env_store)
    envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_store = opts.argv;
  for (auto& s : argv_store)
    argv.push_back(s.data());
  argv.push_back(nullptr);

  if (opts.low_priority || !opts.cgroup_procs.empty() || opts.foreground_tty)
    return spawn_forked(opts, argv, envp, err);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (!opts.stdin_path.empty())
    posix_spawn_file_actions_addopen(&fa, 0, opts.stdin_path.c_str(), O_RDONLY, 0);
  if (!opts.stdout_path.empty())
    posix_spawn_file_actions_addopen(&fa, 1, opts.stdout_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (!opts.stderr_path.empty())
    posix_spawn_file_actions_addopen(&fa, 2, opts.stderr_path.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  if (opts.new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  pid_t pid = 0;
  int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    if (err)
      *err = "cannot start " + opts.argv[0] + ": " + std::strerror(rc);
    return std::nullopt;
  }
  return pid;
}

std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    int status = 0;
    auto r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid)
      return status;
    if (r < 0)
      return std::nullopt;
    if (std::chrono::steady_clock::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

int exit_code_of(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return -1;
}

std::optional<std::string> find_executable(const std::string& name) {
  if (name.find('/') != std::string::npos)
    return ::access(name.c_str(), X_OK) == 0 ? std::optional<std::string>(name) : std::nullopt;
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/local/sbin";
  size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find(':', start);
    auto dir = path.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!dir.empty()) {
      auto candidate = dir + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0)
        return candidate;
    }
    if (end == std::string::npos)
      break;
    start = end + 1;
  }
  return std::nullopt;
}

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0
      && ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

bool port_accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

bool mqtt_broker_accepts(int port, int timeout_ms, std::string* why) {
  auto fail = [&](std::string w) {
    if (why)
      *why = std::move(w);
    return false;
  };
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return fail(std::string("socket: ") + std::strerror(errno));
  struct closer {
    int fd;
    ~closer() { ::close(fd); }
  } guard{fd};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return fail(std::string("connect: ") + std::strerror(errno));
  // CONNECT, MQTT 3.1.1: clean session, keep-alive 10 s, a client id of
  // "lulld-probe-<pid>"; every broker answers it, v5 ones included.
  std::string id = "lulld-probe-" + std::to_string(::getpid());
  std::string var = std::string("\x00\x04MQTT\x04\x02\x00\x0a", 10);
  std::string body = var + static_cast<char>(id.size() >> 8) + static_cast<char>(id.size() & 0xff) + id;
  std::string pkt = std::string(1, '\x10') + static_cast<char>(body.size()) + body;
  if (::send(fd, pkt.data(), pkt.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(pkt.size()))
    return fail(std::string("send: ") + std::strerror(errno));
  unsigned char ack[4];
  std::size_t got = 0;
  while (got < sizeof ack) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0)
      return fail("no MQTT answer within " + std::to_string(timeout_ms) + " ms");
    auto n = ::recv(fd, ack + got, sizeof ack - got, 0);
    if (n <= 0)
      return fail(got == 0 ? "closed the connection without an MQTT answer"
                           : "closed the connection mid-answer");
    got += static_cast<std::size_t>(n);
  }
  if (ack[0] != 0x20 || ack[1] != 0x02)
    return fail("answered something other than MQTT");
  if (ack[3] != 0)
    return fail("refused an anonymous MQTT client (CONNACK code " + std::to_string(ack[3]) + ")");
  static const char disconnect[2] = {'\xe0', '\x00'};
  (void)::send(fd, disconnect, sizeof disconnect, MSG_NOSIGNAL);
  return true;
}

} // namespace lull
