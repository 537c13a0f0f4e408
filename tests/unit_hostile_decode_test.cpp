// Payloads built to hurt a decoder: each must come back as an error value,
// never a crash, a hang or a document that breaks a later dump().

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "messages/codec.hpp"

using namespace lull;

namespace {

std::string msgpack_of(const nlohmann::json& j) {
  return encode(j, wire_format::msgpack);
}

std::string decode_error_of(std::string_view payload, wire_format f, decode_limits lim = {}) {
  decode_error err;
  auto doc = decode(payload, f, &err, lim);
  return doc ? std::string() : err.message;
}

} // namespace

TEST(HostileDecode, OneMegabyteOfNestedMsgpackArraysIsRefusedNotRecursed) {
  std::string evil(1024 * 1024 - 1, '\x91');
  evil.push_back('\xc0');
  auto why = decode_error_of(evil, wire_format::msgpack);
  EXPECT_NE(why.find("nesting deeper than 32"), std::string::npos) << why;
  // Also as a map of maps.
  std::string maps;
  for (int i = 0; i < 100000; ++i)
    maps += "\x81\xa1k";
  maps.push_back('\xc0');
  EXPECT_NE(decode_error_of(maps, wire_format::msgpack).find("nesting"), std::string::npos);
}

TEST(HostileDecode, DeepJsonIsRefused) {
  std::string deep(8000, '[');
  deep += std::string(8000, ']');
  EXPECT_NE(decode_error_of(deep, wire_format::json).find("nesting deeper"), std::string::npos);
  // Brackets inside strings do not count.
  std::string s = "{\"a\":\"" + std::string(100, '[') + "\\\"\"}";
  EXPECT_EQ(decode_error_of(s, wire_format::json), "");
}

TEST(HostileDecode, NestingUpToTheLimitIsAccepted) {
  nlohmann::json j = 1;
  for (int i = 0; i < 32; ++i)
    j = nlohmann::json::array({j});
  EXPECT_EQ(decode_error_of(msgpack_of(j), wire_format::msgpack), "");
  EXPECT_EQ(decode_error_of(j.dump(), wire_format::json), "");
  j = nlohmann::json::array({j});
  EXPECT_NE(decode_error_of(msgpack_of(j), wire_format::msgpack), "");
  EXPECT_NE(decode_error_of(j.dump(), wire_format::json), "");
}

TEST(HostileDecode, MsgpackStringsMustBeUtf8) {
  // {"payload": "\xff\xfe"}: would throw type_error.316 on a later dump().
  std::string bad = "\x81\xa7payload\xa2\xff\xfe";
  auto why = decode_error_of(bad, wire_format::msgpack);
  EXPECT_NE(why.find("not valid UTF-8"), std::string::npos) << why;
  // In a key too, and in str8.
  EXPECT_NE(decode_error_of("\x81\xa2\xc0\xaf\x01", wire_format::msgpack), "");
  EXPECT_NE(decode_error_of(std::string("\xd9\x03\xed\xa0\x80", 5), wire_format::msgpack), "");
  // Valid multi-byte text passes and dumps.
  auto doc = decode(msgpack_of({{"name", "Küche ☕ 𝄞"}}), wire_format::msgpack);
  ASSERT_TRUE(doc);
  EXPECT_NO_THROW(doc->dump());
}

TEST(HostileDecode, Utf8Validator) {
  EXPECT_TRUE(valid_utf8("plain"));
  EXPECT_TRUE(valid_utf8("\xc3\xa4\xe2\x98\x95\xf0\x9d\x84\x9e"));
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));         // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));     // surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80")); // above U+10FFFF
  EXPECT_FALSE(valid_utf8("\xe2\x98"));         // cut short
  EXPECT_FALSE(valid_utf8("\x80"));
}

TEST(HostileDecode, NonFiniteNumbersAreRefused) {
  auto nan = msgpack_of({{"wait_sec", std::numeric_limits<double>::quiet_NaN()}});
  EXPECT_NE(decode_error_of(nan, wire_format::msgpack).find("not finite"), std::string::npos);
  auto inf = msgpack_of({{"deadline_sec", std::numeric_limits<double>::infinity()}});
  EXPECT_NE(decode_error_of(inf, wire_format::msgpack), "");
  std::string f32("\x81\xa1x\xca\x7f\xc0\x00\x00", 8); // float32 NaN
  EXPECT_NE(decode_error_of(f32, wire_format::msgpack), "");
  EXPECT_NE(decode_error_of("{\"x\":1e400}", wire_format::json), "");
  EXPECT_EQ(decode_error_of("{\"x\":1e300}", wire_format::json), "");
}

TEST(HostileDecode, TruncatedLyingAndTrailingMsgpackIsRefused) {
  EXPECT_NE(decode_error_of("\xdd\xff\xff\xff\xff", wire_format::msgpack), "");   // 4G items, 0 bytes
  EXPECT_NE(decode_error_of("\xdb\xff\xff\xff\xff" "ab", wire_format::msgpack), ""); // str32 lie
  EXPECT_NE(decode_error_of(std::string("\xc6\x00\x00\x00\x09" "ab", 7), wire_format::msgpack),
            ""); // bin32 lie
  EXPECT_NE(decode_error_of(std::string("\xc1", 1), wire_format::msgpack), "");
  EXPECT_NE(decode_error_of(std::string("\x80\x01", 2), wire_format::msgpack), ""); // trailing
  EXPECT_NE(decode_error_of("", wire_format::msgpack), "");
  EXPECT_EQ(decode_error_of(msgpack_of({{"a", {1, 2.5, "x", nullptr, true}}}),
                            wire_format::msgpack),
            "");
}

TEST(HostileDecode, SizeCapComesBeforeParsing) {
  std::string big = "{\"a\":\"" + std::string(2000, 'x') + "\"}";
  auto why = decode_error_of(big, wire_format::json, {1000, 32});
  EXPECT_NE(why.find("at most 1000"), std::string::npos) << why;
}
