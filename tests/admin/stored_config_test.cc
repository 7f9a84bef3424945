// Image configs stored by an older version without the import bounds (issue 9, case 3): Inspect
// must neither crash (a config nested a million deep overflowed the recursive serializer) nor
// build a huge reply (20,000 deep rendered to ~800 MB). And import errors reach the client with
// their own code: a symlink loop is INVALID_ARGUMENT, not UNKNOWN.

#include <unistd.h>

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "node/images/limits.h"
#include "tests/admin/admin_test_util.h"

namespace strata::admintest {
namespace {

namespace pb = strata::admin::v1;

class StoredConfigTest : public AdminFixture {
 protected:
  grpc::Status Inspect(const std::string& id, std::string* json) {
    grpc::ClientContext context;
    pb::InspectRequest request;
    request.set_id(id);
    pb::InspectResponse response;
    grpc::Status status = stub_->Inspect(&context, request, &response);
    *json = response.json();
    return status;
  }
  void PutImage(const std::string& name, const std::string& config) {
    ASSERT_TRUE(metadata_->PutImage(node::ImageRecord{name, "", config, 0}).ok());
  }
};

std::string Nested(int depth) {
  return "{\"x\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
}

TEST_F(StoredConfigTest, InspectDescribesHostileStoredConfigsInsteadOfRenderingThem) {
  PutImage("million:1", Nested(1000000));
  PutImage("twenty-k:1", Nested(20000));
  PutImage("not-json:1", "{\"x\": \xff\xfe");
  PutImage("fine:1", R"({"architecture":"amd64","config":{"Env":["A=1"]}})");
  for (const std::string name : {"million:1", "twenty-k:1", "not-json:1"}) {
    SCOPED_TRACE(name);
    std::string reply;
    grpc::Status status = Inspect(name, &reply);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_LT(reply.size(), 64u << 10);
    nlohmann::json doc = nlohmann::json::parse(reply);
    EXPECT_TRUE(doc["config"].is_null());
    EXPECT_TRUE(doc["config_error"].is_string());
    EXPECT_TRUE(doc["config_head"].is_string());
  }
  std::string reply;
  ASSERT_TRUE(Inspect("million:1", &reply).ok());
  EXPECT_NE(reply.find("--max-json-depth"), std::string::npos) << reply.substr(0, 500);
  ASSERT_TRUE(Inspect("fine:1", &reply).ok());
  nlohmann::json fine = nlohmann::json::parse(reply);
  EXPECT_EQ(fine["config"]["config"]["Env"][0], "A=1");
  EXPECT_FALSE(fine.contains("config_error"));
}

TEST_F(StoredConfigTest, ImportOfASymlinkLoopIsInvalidArgument) {
  const std::string a = work_->path() + "/loop-a";
  const std::string b = work_->path() + "/loop-b";
  ASSERT_EQ(symlink(b.c_str(), a.c_str()), 0);
  ASSERT_EQ(symlink(a.c_str(), b.c_str()), 0);
  grpc::ClientContext context;
  pb::ImportImageRequest request;
  request.set_path(a);
  pb::ImportImageResponse response;
  grpc::Status status = stub_->ImportImage(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
  EXPECT_NE(status.error_message().find(a), std::string::npos) << status.error_message();
}

}  // namespace
}  // namespace strata::admintest
