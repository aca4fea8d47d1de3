/*
 * policy.h - every tunable constant of haul, each with the reason for its value.
 * Owners add their constants here, in their own section.
 */
#ifndef HAUL_COMMON_POLICY_H
#define HAUL_COMMON_POLICY_H

#define HAUL_PAGE_SIZE 4096UL
#define HAUL_PAGE_SHIFT 12

#endif
