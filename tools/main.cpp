// troupe: the command-line tool.
//   troupe journal list|events|verify|stats|create --db FILE [options]
//   troupe cluster members|leave|down --http HOST:PORT [--address HOST:PORT]
#include "cluster_command.hpp"
#include "journal_command.hpp"

#include <cstdio>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "journal")
    return troupe::tools::journal_command({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "cluster")
    return troupe::tools::cluster_command({args.begin() + 1, args.end()});
  std::fprintf(stderr,
               "usage: troupe journal list|events|verify|stats|create --db FILE [options]\n"
               "  list                       persistence ids with event counts and highest seq\n"
               "  events [--id ID] [--tag T] [--from-offset N] [--limit N]\n"
               "                             events as JSON lines (payloads rendered from CBOR)\n"
               "  verify                     sequence gaps, orphaned events and snapshots,\n"
               "                             damaged or undecodable rows, invalid UTF-8;\n"
               "                             exit 1 when problems exist\n"
               "  stats                      counts, sizes, ids, tags, page size, WAL settings\n"
               "  create                     a new, empty journal (the explicit creation a\n"
               "                             node needs before its first start)\n"
               "       troupe cluster members|leave|down --http HOST:PORT [--address HOST:PORT]\n");
  return 2;
}
