#pragma once
#include <napi.h>

namespace rift::napi {
// exports.dist: the data-parallel layer (native/distributed: MPI / NCCL loaded at run time, ZeRO-1).
void init_dist(Napi::Env env, Napi::Object exports);
}  // namespace rift::napi
