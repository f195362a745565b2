#pragma once
// Whether the client of a request still holds its connection open, for the non-streaming
// responses: a client that gives up on a long completion and hangs up must cancel its request
// (issue 13), and with nothing written until the end no failed write would say so.
//
// Debian's cpp-httplib (0.11) gives a handler no access to its socket, so the probe finds it by its
// addresses: the open descriptor whose local port is the request's local_port and whose peer is
// (remote_addr, remote_port). That is unique while the handler runs, since httplib keeps the
// connection (and its descriptor) until the handler returns. The search reads /proc/self/fd once,
// on the first call; peer_open() is then one poll().
#include <string>
#include <utility>

namespace strata {

class ConnectionProbe {
 public:
  ConnectionProbe(std::string remote_addr, int remote_port, int local_port)
      : remote_addr_(std::move(remote_addr)), remote_port_(remote_port), local_port_(local_port) {}
  // false once the peer has closed or reset the connection (POLLRDHUP / POLLHUP / POLLERR). true
  // while it is open, and when the socket cannot be found (never cancel on a guess). A client
  // that half-closes its side after sending the request counts as gone.
  bool peer_open();
  // The descriptor found (-1: not found, or not searched yet): for tests.
  int fd() const { return fd_; }

 private:
  std::string remote_addr_;
  int remote_port_, local_port_;
  int fd_ = -1;
  bool searched_ = false;
};

}  // namespace strata
