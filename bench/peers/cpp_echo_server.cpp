// cpp_echo_server: Apache Thrift C++ (0.17) TNonblockingServer serving the
// Echo service of bench/workload.thrift, as the "stock Thrift"
// peer for bench/rpc.
//
//   cpp_echo_server [--port P] [--host 127.0.0.1] [--duration SECONDS]
//
// TFramedTransport + TBinaryProtocol (strict), TNonblockingServer with one
// IO thread and no ThreadManager, so every call is decoded, handled and
// encoded on that single thread (one core, like the other peers).
// Handler: echo returns its request, fire does nothing, big/blob/vectors
// return their argument. Exits by itself after --duration (default 600) s.
//
// Built by bench/peers/build_rpc.sh against code generated from a copy of
// workload.thrift in which the struct type Ano is renamed AnoT (g++ rejects
// the member `Ano Ano;`; type names are not on the wire).

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <thrift/concurrency/ThreadFactory.h>
#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/server/TNonblockingServer.h>
#include <thrift/transport/TNonblockingServerSocket.h>

#include "Echo.h"

using namespace apache::thrift;
using namespace apache::thrift::protocol;
using namespace apache::thrift::server;
using namespace apache::thrift::transport;

namespace {

class EchoHandler : public bench::EchoIf {
public:
  void echo(bench::Request& ret, const bench::Request& req) override { ret = req; }
  void fire(const bench::Request&) override {}
  void big(bench::MyTest& ret, const bench::MyTest& req) override { ret = req; }
  void blob(bench::Blob& ret, const bench::Blob& req) override { ret = req; }
  void vectors(bench::Vectors& ret, const bench::Vectors& req) override { ret = req; }
};

void usage() {
  std::fprintf(stderr, "usage: cpp_echo_server [--port P] [--host H] [--duration SECONDS]\n");
  std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 9090;
  std::string host = "127.0.0.1";
  double duration = 600;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) usage();
    if (a == "--port") port = std::atoi(argv[++i]);
    else if (a == "--host") host = argv[++i];
    else if (a == "--duration") duration = std::atof(argv[++i]);
    else usage();
  }
  if (port <= 0 || port > 65535 || duration <= 0) usage();

  signal(SIGPIPE, SIG_IGN);
  // Hard backstop: SIGALRM's default action kills the process.
  alarm(static_cast<unsigned>(duration + 0.999) + 2);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  auto handler = std::make_shared<EchoHandler>();
  auto processor = std::make_shared<bench::EchoProcessor>(handler);
  auto proto = std::make_shared<TBinaryProtocolFactory>();
  auto socket = std::make_shared<TNonblockingServerSocket>(host, port);
  socket->setAcceptBacklog(4096);
  // No ThreadManager: calls run on the IO thread.
  TNonblockingServer server(processor, proto, socket);
  server.setNumIOThreads(1);
  server.setUseHighPriorityIOThreads(false);

  std::thread limit([duration] {
    std::this_thread::sleep_for(std::chrono::duration<double>(duration));
    std::fprintf(stderr, "cpp_echo_server: duration limit reached, exiting\n");
    std::fflush(stderr);
    std::_Exit(0);
  });
  limit.detach();

  std::fprintf(stderr, "cpp_echo_server: listening on %s:%d\n", host.c_str(), port);
  try {
    server.serve();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cpp_echo_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
