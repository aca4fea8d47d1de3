/* mig_cli.c - parsing of haul migrate's --bandwidth. */
#include <criterion/criterion.h>
#include <errno.h>

#include "haul/haul_int.h"

Test(mig_cli, parses_byte_rates_with_decimal_suffixes)
{
	uint64_t v;

	cr_assert_eq(haul_parse_rate("500M", &v), 0);
	cr_assert_eq(v, 500000000);
	cr_assert_eq(haul_parse_rate("2G", &v), 0);
	cr_assert_eq(v, 2000000000);
	cr_assert_eq(haul_parse_rate("1.5k", &v), 0);
	cr_assert_eq(v, 1500);
	cr_assert_eq(haul_parse_rate("4096", &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(haul_parse_rate("60MB", &v), 0);
	cr_assert_eq(v, 60000000);
}

Test(mig_cli, parses_bit_rates_as_tc_writes_them)
{
	uint64_t v;

	cr_assert_eq(haul_parse_rate("1gbit", &v), 0);
	cr_assert_eq(v, 125000000);
	cr_assert_eq(haul_parse_rate("800mbit", &v), 0);
	cr_assert_eq(v, 100000000);
}

Test(mig_cli, rejects_what_is_not_a_rate)
{
	uint64_t v;

	cr_assert_eq(haul_parse_rate("fast", &v), -EINVAL);
	cr_assert_eq(haul_parse_rate("-5M", &v), -EINVAL);
	cr_assert_eq(haul_parse_rate("5Mfurlongs", &v), -EINVAL);
}
