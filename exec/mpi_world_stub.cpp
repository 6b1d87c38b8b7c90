// Built instead of mpi_world.cpp when MPI was not found.
#include "exec/mpi_world.h"

namespace pipeproof {

bool HaveMpi() { return false; }

std::unique_ptr<World> MakeMpiWorld(MpiTransportFactory, std::string) {
  throw InputError("this pipeproof was built without MPI (install libopenmpi-dev and rebuild), "
                   "so --transport mpi is not available");
}

}  // namespace pipeproof
