// Peer benchmark: Apache Thrift C++ (0.17, generated with cpp:templates)
// decoding/encoding the canonical workload messages with
// TBinaryProtocolT<TMemoryBuffer> and TCompactProtocolT<TMemoryBuffer>
// (non-virtual, templated protocol calls).
//
// Usage: cpp_codec DATA_DIR [WORKLOAD...]
//   env PEER_TARGET_SEC  seconds per timed run (default 0.4)
//   env PEER_ROUNDS      timed runs, the best is printed (default 3;
//                        bench/codec.lua runs 1 per round, interleaved)
// Times are CPU time of the process (CLOCK_PROCESS_CPUTIME_ID), as every
// peer of bench/codec.lua measures.
// Output, one line per operation:
//   cpp <workload> decode <ns_per_op> <bytes>
//   cpp <workload> encode <ns_per_op> <bytes>
//   cpp-compact <workload> decode|encode <ns_per_op> <bytes>
// <bytes> is the size of the encoded message (.bin, or its Compact form).
// Exit 1 if the re-encoded bytes differ from the .bin file (Binary) or from
// the first Compact encoding (Compact).
//
// decode: a fresh struct per iteration (construct + read + destroy), read
//         from a TMemoryBuffer that observes the .bin bytes (resetBuffer with
//         OBSERVE each iteration: no copy).
// encode: write the decoded struct into one reused TMemoryBuffer that is
//         reset (resetBuffer(), keeps its allocation) each iteration.
// Built by bench/peers/build.sh; generated code lives under build/peers/.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include <time.h>

#include <thrift/protocol/TBinaryProtocol.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include "workload_types.h"
#include "workload_types.tcc"

using apache::thrift::protocol::TBinaryProtocolT;
using apache::thrift::protocol::TCompactProtocolT;
using apache::thrift::transport::TMemoryBuffer;
typedef TBinaryProtocolT<TMemoryBuffer> Proto;
typedef TCompactProtocolT<TMemoryBuffer> CProto;

static double target_sec = 0.4;
static int rounds = 3;

static double now_sec() {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::fprintf(stderr, "cpp: cannot open %s\n", path.c_str());
    std::exit(2);
  }
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f),
                              std::istreambuf_iterator<char>());
}

// Time fn(iters) adaptively: calibrate, then best of `rounds` runs of
// ~target_sec.
template <typename F>
static double bench_ns(F fn) {
  long n = 1;
  double el;
  for (;;) {
    double t0 = now_sec();
    fn(n);
    el = now_sec() - t0;
    if (el >= target_sec / 8 || n >= (1L << 30)) break;
    n *= (el > 0 && el < target_sec / 80) ? 10 : 2;
  }
  long iters = (long)(n * (target_sec / el));
  if (iters < 1) iters = 1;
  double best = 1e300;
  for (int rep = 0; rep < rounds; rep++) {
    double t0 = now_sec();
    fn(iters);
    double ns = (now_sec() - t0) * 1e9 / (double)iters;
    if (ns < best) best = ns;
  }
  return best;
}

template <typename T>
static int run(const std::string& dir, const std::string& name) {
  std::vector<uint8_t> bin = read_file(dir + "/" + name + ".bin");
  uint32_t sz = (uint32_t)bin.size();

  auto rbuf = std::make_shared<TMemoryBuffer>(bin.data(), sz, TMemoryBuffer::OBSERVE);
  Proto rproto(rbuf);
  auto wbuf = std::make_shared<TMemoryBuffer>(sz + 64);
  Proto wproto(wbuf);

  // Decode once and verify the encoder reproduces the bytes exactly.
  T value;
  value.read(&rproto);
  rbuf->readEnd();
  wbuf->resetBuffer();
  value.write(&wproto);
  uint8_t* out;
  uint32_t outlen;
  wbuf->getBuffer(&out, &outlen);
  if (outlen != sz || std::memcmp(out, bin.data(), sz) != 0) {
    std::fprintf(stderr, "cpp %s: ERROR re-encoded bytes differ from %s.bin (%u vs %u bytes)\n",
                 name.c_str(), name.c_str(), outlen, sz);
    return 1;
  }

  double dec = bench_ns([&](long iters) {
    for (long i = 0; i < iters; i++) {
      rbuf->resetBuffer(bin.data(), sz, TMemoryBuffer::OBSERVE);
      T v;
      v.read(&rproto);
      rbuf->readEnd();  // resets the transport's consumed-message-size count
    }
  });
  std::printf("cpp %s decode %.1f %u\n", name.c_str(), dec, sz);
  std::fflush(stdout);

  double enc = bench_ns([&](long iters) {
    for (long i = 0; i < iters; i++) {
      wbuf->resetBuffer();
      value.write(&wproto);
    }
  });
  wbuf->getBuffer(&out, &outlen);
  if (outlen != sz || std::memcmp(out, bin.data(), sz) != 0) {
    std::fprintf(stderr, "cpp %s: ERROR encode output differs after benchmark\n", name.c_str());
    return 1;
  }
  std::printf("cpp %s encode %.1f %u\n", name.c_str(), enc, sz);
  std::fflush(stdout);

  // Compact: the decoded value written with TCompactProtocolT, read back
  auto cbuf = std::make_shared<TMemoryBuffer>(sz + 64);
  CProto cwproto(cbuf);
  value.write(&cwproto);
  cbuf->getBuffer(&out, &outlen);
  std::vector<uint8_t> cbin(out, out + outlen);
  uint32_t csz = (uint32_t)cbin.size();
  auto crbuf = std::make_shared<TMemoryBuffer>(cbin.data(), csz, TMemoryBuffer::OBSERVE);
  CProto crproto(crbuf);
  double cdec = bench_ns([&](long iters) {
    for (long i = 0; i < iters; i++) {
      crbuf->resetBuffer(cbin.data(), csz, TMemoryBuffer::OBSERVE);
      T v;
      v.read(&crproto);
      crbuf->readEnd();
    }
  });
  std::printf("cpp-compact %s decode %.1f %u\n", name.c_str(), cdec, csz);
  std::fflush(stdout);
  double cenc = bench_ns([&](long iters) {
    for (long i = 0; i < iters; i++) {
      cbuf->resetBuffer();
      value.write(&cwproto);
    }
  });
  cbuf->getBuffer(&out, &outlen);
  if (outlen != csz || std::memcmp(out, cbin.data(), csz) != 0) {
    std::fprintf(stderr, "cpp %s: ERROR compact encode output differs after benchmark\n", name.c_str());
    return 1;
  }
  std::printf("cpp-compact %s encode %.1f %u\n", name.c_str(), cenc, csz);
  std::fflush(stdout);
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DATA_DIR [WORKLOAD...]\n", argv[0]);
    return 2;
  }
  if (const char* t = std::getenv("PEER_TARGET_SEC")) target_sec = std::atof(t);
  if (const char* r = std::getenv("PEER_ROUNDS")) rounds = std::atoi(r) > 0 ? std::atoi(r) : 1;
  std::string dir = argv[1];
  std::vector<std::string> names;
  for (int i = 2; i < argc; i++) names.push_back(argv[i]);
  if (names.empty()) names = {"small", "medium", "large", "mytest", "blob", "vectors"};

  int rc = 0;
  for (const std::string& n : names) {
    try {
      if (n == "small" || n == "medium" || n == "large") rc |= run<bench::Request>(dir, n);
      else if (n == "mytest") rc |= run<bench::MyTest>(dir, n);
      else if (n == "blob") rc |= run<bench::Blob>(dir, n);
      else if (n == "vectors") rc |= run<bench::Vectors>(dir, n);
      else {
        std::fprintf(stderr, "cpp: unknown workload %s\n", n.c_str());
        rc = 1;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "cpp %s: ERROR %s\n", n.c_str(), e.what());
      rc = 1;
    }
    if (rc) return 1;
  }
  return 0;
}
