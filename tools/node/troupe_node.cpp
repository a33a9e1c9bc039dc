// troupe-node: a cluster node without entities of its own (seed nodes, tests,
// a starting point). `troupe-node --help` lists the flags.
#include "troupe/node_main.hpp"

int main(int argc, char** argv) {
  return troupe::node_main(argc, argv);
}
