// A child process for tests that run a real binary (`troupe serve`,
// chromedriver): started with posix_spawn, its stdout read line by line
// through a pipe, signalled and waited for. The destructor kills a child
// still running (SIGKILL) and reaps it, so a failed test leaves nothing
// behind; with `own_group`, the child leads a process group of its own and
// the destructor kills the whole group (chromedriver and the browsers it
// started). Blocking reads: the test's own timeout bounds them.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace troupe::testing {

class child_process {
public:
  /// Starts argv[0] (a path) with `argv`, the environment plus `env`
  /// ("NAME=value", replacing a variable of that name, or "NAME" alone to
  /// remove it), stdout into a pipe, stderr to `stderr_path` ("" = the
  /// test's own stderr).
  child_process(const std::vector<std::string>& argv, const std::vector<std::string>& env = {},
                const std::string& stderr_path = "", bool own_group = false)
    : own_group_(own_group) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) // other children must not hold it
      throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    if (!stderr_path.empty())
      posix_spawn_file_actions_addopen(&fa, 2, stderr_path.c_str(),
                                       O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<std::string> envs;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string var = *e;
      bool replaced = false;
      for (const auto& add : env)
        replaced = replaced || var.compare(0, name_of(add).size() + 1, name_of(add) + "=") == 0;
      if (!replaced)
        envs.push_back(var);
    }
    for (const auto& add : env)
      if (add.find('=') != std::string::npos)
        envs.push_back(add);
    auto cstrs = [](const std::vector<std::string>& v) {
      std::vector<char*> out;
      for (const auto& s : v)
        out.push_back(const_cast<char*>(s.c_str()));
      out.push_back(nullptr);
      return out;
    };
    auto args = cstrs(argv);
    auto envp = cstrs(envs);
    // The child must not inherit blocked signals from the test (serve
    // blocks SIGINT and SIGTERM itself).
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    short flags = POSIX_SPAWN_SETSIGMASK;
    if (own_group) {
      posix_spawnattr_setpgroup(&attr, 0); // a group led by the child
      flags |= POSIX_SPAWN_SETPGROUP;
    }
    posix_spawnattr_setflags(&attr, flags);
    int rc = posix_spawn(&pid_, argv[0].c_str(), &fa, &attr, args.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
      close(fds[0]);
      throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
    }
    out_ = fds[0];
  }
  ~child_process() {
    if (pid_ > 0) {
      kill(own_group_ ? -pid_ : pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
    } else if (own_group_ && group_ > 0) {
      kill(-group_, SIGKILL); // what the child started may outlive it
    }
    if (out_ >= 0)
      close(out_);
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// The next line of its stdout, without the newline; false at the end.
  bool read_line(std::string& line) {
    line.clear();
    for (;;) {
      auto nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return true;
      }
      char chunk[4096];
      auto n = read(out_, chunk, sizeof chunk);
      if (n <= 0) {
        line = buffer_;
        buffer_.clear();
        return !line.empty();
      }
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
  /// Reads lines until one contains `needle`; every line read goes to
  /// `seen`. The line, or "" if stdout ended first.
  std::string read_until(const std::string& needle, std::string& seen) {
    std::string line;
    while (read_line(line)) {
      seen += line + "\n";
      if (line.find(needle) != std::string::npos)
        return line;
    }
    return {};
  }
  void signal(int sig) {
    if (pid_ > 0)
      kill(pid_, sig);
  }
  /// Waits for the child to exit: its exit code, or 128 + the signal that
  /// killed it.
  int wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    group_ = pid_;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  pid_t pid() const { return pid_; }

private:
  static std::string name_of(const std::string& var) { return var.substr(0, var.find('=')); }

  bool own_group_ = false;
  pid_t pid_ = -1;
  pid_t group_ = -1; ///< after wait(): the group the child led
  int out_ = -1;
  std::string buffer_;
};

} // namespace troupe::testing
