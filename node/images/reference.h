#pragma once
// Image references normalised the way Docker does (distribution/reference's
// ParseNormalizedNamed + TagNameOnly): `busybox` is docker.io/library/busybox:latest.

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace strata::images {

// REF in full form: registry host (docker.io when REF names none), repository path (library/
// for a one-component docker.io name), then `:tag` (`:latest` when REF has neither a tag nor a
// digest) and/or `@algorithm:hex`. INVALID_ARGUMENT, naming what is wrong, for anything the
// reference grammar refuses (uppercase repository, empty components, bad tag or digest).
absl::StatusOr<std::string> NormalizeImageRef(std::string_view ref);

// The short form `docker images` shows for a normalised REF: docker.io/ and library/ dropped
// (`docker.io/library/busybox:1.36` -> `busybox:1.36`); other registries are kept.
std::string FamiliarImageRef(std::string_view normalized);

}  // namespace strata::images
