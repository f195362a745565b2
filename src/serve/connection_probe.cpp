#include "serve/connection_probe.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdlib>

namespace strata {
namespace {

// addr's IP as text and port (IPv4 or IPv6); false for another family.
bool ip_and_port(const sockaddr_storage& addr, std::string& ip, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto& a = reinterpret_cast<const sockaddr_in&>(addr);
    if (!inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf)) return false;
    port = ntohs(a.sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6&>(addr);
    if (!inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf)) return false;
    port = ntohs(a.sin6_port);
  } else {
    return false;
  }
  ip = buf;
  return true;
}

bool matches(int fd, const std::string& remote_addr, int remote_port, int local_port) {
  sockaddr_storage local{}, peer{};
  socklen_t ll = sizeof local, pl = sizeof peer;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &ll) != 0) return false;  // not a socket
  std::string ip;
  int port = -1;
  if (!ip_and_port(local, ip, port) || port != local_port) return false;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) return false;  // the listening socket
  return ip_and_port(peer, ip, port) && port == remote_port && ip == remote_addr;
}

}  // namespace

bool ConnectionProbe::peer_open() {
  if (!searched_) {
    searched_ = true;
    if (remote_port_ > 0 && local_port_ > 0)
      if (DIR* d = opendir("/proc/self/fd")) {
        while (const dirent* e = readdir(d)) {
          char* end = nullptr;
          const long fd = std::strtol(e->d_name, &end, 10);
          if (end == e->d_name || *end != '\0' || fd == dirfd(d)) continue;
          if (matches(int(fd), remote_addr_, remote_port_, local_port_)) {
            fd_ = int(fd);
            break;
          }
        }
        closedir(d);
      }
  }
  if (fd_ < 0) return true;
  pollfd p{fd_, POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return true;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) == 0;
}

}  // namespace strata
