#pragma once
// Content digests as the OCI image spec writes them ("sha256:<64 lowercase hex>") and the
// ChainID that names a stack of layers.

#include <openssl/evp.h>

#include <cstddef>
#include <string>
#include <vector>

namespace strata::images {

// Streaming SHA-256. update() any number of times, then finish() once.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void update(const void* data, size_t size);
  void update(const std::string& data) { update(data.data(), data.size()); }
  // "sha256:<64 hex>". The object cannot be updated afterwards.
  std::string finish();

 private:
  EVP_MD_CTX* ctx_;
};

// Digest of `data` in one call.
std::string Sha256Digest(const std::string& data);

// True only for "sha256:" followed by exactly 64 lowercase hex digits.
bool IsValidDigest(const std::string& digest);

// OCI image spec: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
// `parent_chain_id` empty means `diff_id` is the base layer.
std::string ChainId(const std::string& parent_chain_id, const std::string& diff_id);

// ChainIDs of every prefix of `diff_ids` (base layer first), same length as the input.
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

}  // namespace strata::images
