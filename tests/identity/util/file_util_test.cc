#include "identity/util/file_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshguard::util {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TEST_TMPDIR");
    std::string templ = absl::StrCat(tmp ? tmp : "/tmp", "/fu.XXXXXX");
    ASSERT_NE(mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }

  std::string Path(const std::string& name) const {
    return JoinPath(dir_, name);
  }
  std::string Read(const std::string& name) const {
    absl::StatusOr<std::string> s = ReadFile(Path(name));
    return s.ok() ? *s : "<" + s.status().ToString() + ">";
  }
  std::set<std::string> Entries() const {
    std::set<std::string> out;
    DIR* d = opendir(dir_.c_str());
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") out.insert(name);
    }
    closedir(d);
    return out;
  }
  mode_t Mode(const std::string& name) const {
    struct stat st;
    return stat(Path(name).c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
  }

  std::string dir_;
};

TEST_F(FileUtilTest, ReplaceFilesWritesTheWholeSetWithModes) {
  ASSERT_TRUE(ReplaceFiles(dir_, {{"key.pem", "new key", 0600},
                                  {"cert.pem", "new cert", 0644}})
                  .ok());
  EXPECT_EQ(Read("key.pem"), "new key");
  EXPECT_EQ(Read("cert.pem"), "new cert");
  EXPECT_EQ(Mode("key.pem"), 0600u);
  EXPECT_EQ(Mode("cert.pem"), 0644u);
  // Again over the old ones: replaced, and nothing else left in the dir.
  ASSERT_TRUE(ReplaceFiles(dir_, {{"key.pem", "newer key", 0600},
                                  {"cert.pem", "newer cert", 0644}})
                  .ok());
  EXPECT_EQ(Read("key.pem"), "newer key");
  EXPECT_EQ(Read("cert.pem"), "newer cert");
  EXPECT_THAT(Entries(), UnorderedElementsAre("key.pem", "cert.pem"));
}

TEST_F(FileUtilTest, ReplaceFilesChangesNothingWhenOneTargetCannotBeReplaced) {
  ASSERT_TRUE(ReplaceFiles(dir_, {{"key.pem", "old key", 0600}}).ok());
  ASSERT_EQ(mkdir(Path("cert.pem").c_str(), 0700), 0);
  absl::Status s = ReplaceFiles(
      dir_, {{"key.pem", "new key", 0600}, {"cert.pem", "new cert", 0644}});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr(Path("cert.pem")), HasSubstr("is a directory")));
  EXPECT_EQ(Read("key.pem"), "old key");
  EXPECT_THAT(Entries(), UnorderedElementsAre("key.pem", "cert.pem"))
      << "no temporary or backup file is left";
}

TEST_F(FileUtilTest, ReplaceFilesInAMissingDirectoryFailsNamingIt) {
  absl::Status s =
      ReplaceFiles(Path("missing"), {{"key.pem", "new key", 0600}});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr(Path("missing")));
}

TEST_F(FileUtilTest, ExclusiveLockRefusesASecondProcessNamingTheHolder) {
  const std::string lock_path = Path("ca.lock");
  absl::StatusOr<ExclusiveLock> held =
      ExclusiveLock::Acquire(lock_path, "data dir D");
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(Read("ca.lock"), absl::StrCat(getpid(), "\n"));

  // flock is per open file description: a child process is refused.
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    absl::StatusOr<ExclusiveLock> second =
        ExclusiveLock::Acquire(lock_path, "data dir D");
    const bool right =
        !second.ok() &&
        second.status().code() == absl::StatusCode::kFailedPrecondition &&
        second.status().message() ==
            absl::StrCat("data dir D is in use by another process (pid ",
                         getppid(), "): it holds the lock on ", lock_path);
    _exit(right ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "the second Acquire was not refused as expected";

  // Released with the object: taken again.
  *held = ExclusiveLock::Acquire(Path("other.lock"), "x").value();
  absl::StatusOr<ExclusiveLock> again =
      ExclusiveLock::Acquire(lock_path, "data dir D");
  EXPECT_TRUE(again.ok()) << again.status();
}

}  // namespace
}  // namespace meshguard::util
