/*
 * weld.h - the public interface of weld's library, for the commands and
 * the tests: the base (base.h), checkpoints on disk (model.h), the merge
 * engine (merge.h), the model comparison of weld diff (compare.h) and the
 * checksum check of weld verify (verify.h).
 * Inside the library, each file includes only the headers of its own
 * layer and those below it (see tests/check_layers.sh).
 */
#ifndef WELD_H
#define WELD_H

#include "base.h"
#include "model.h"
#include "merge.h"
#include "compare.h"
#include "verify.h"
#include "lora_extract.h"
#include "lora_svd.h"

#endif
