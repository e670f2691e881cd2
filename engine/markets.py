"""Country → market (currency, locale, region), for pricing and ranking.

The table covers the countries with the most internet users; any other
country gets a sensible default (its region's currency where one dominates,
else US dollars) so no IP is ever without a market.
"""

from __future__ import annotations

from dataclasses import dataclass

from iptocc import country_code

UNKNOWN_COUNTRY = "ZZ"

CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CAD", "AUD", "CHF", "SEK", "NOK", "DKK",
              "PLN", "CNY", "INR", "BRL", "MXN", "KRW", "SGD", "NZD", "ZAR", "TRY")

# Currencies without minor units in everyday pricing.
ZERO_DECIMAL = frozenset({"JPY", "KRW"})


@dataclass(frozen=True)
class Market:
    country: str
    currency: str
    locale: str
    region: str  # EU, NA, LATAM, APAC, MEA


_EURO = ("AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT",
         "LT", "LU", "LV", "MT", "NL", "PT", "SI", "SK")
_EURO_LANG = {"AT": "de", "BE": "nl", "CY": "el", "DE": "de", "EE": "et", "ES": "es",
              "FI": "fi", "FR": "fr", "GR": "el", "HR": "hr", "IE": "en", "IT": "it",
              "LT": "lt", "LU": "fr", "LV": "lv", "MT": "mt", "NL": "nl", "PT": "pt",
              "SI": "sl", "SK": "sk"}

_TABLE: dict[str, tuple[str, str, str]] = {
    "US": ("USD", "en-US", "NA"), "CA": ("CAD", "en-CA", "NA"), "MX": ("MXN", "es-MX", "LATAM"),
    "BR": ("BRL", "pt-BR", "LATAM"), "AR": ("USD", "es-AR", "LATAM"), "CL": ("USD", "es-CL", "LATAM"),
    "CO": ("USD", "es-CO", "LATAM"), "PE": ("USD", "es-PE", "LATAM"),
    "GB": ("GBP", "en-GB", "EU"), "CH": ("CHF", "de-CH", "EU"), "SE": ("SEK", "sv-SE", "EU"),
    "NO": ("NOK", "nb-NO", "EU"), "DK": ("DKK", "da-DK", "EU"), "PL": ("PLN", "pl-PL", "EU"),
    "CZ": ("EUR", "cs-CZ", "EU"), "HU": ("EUR", "hu-HU", "EU"), "RO": ("EUR", "ro-RO", "EU"),
    "TR": ("TRY", "tr-TR", "MEA"), "ZA": ("ZAR", "en-ZA", "MEA"), "AE": ("USD", "ar-AE", "MEA"),
    "SA": ("USD", "ar-SA", "MEA"), "IL": ("USD", "he-IL", "MEA"), "EG": ("USD", "ar-EG", "MEA"),
    "NG": ("USD", "en-NG", "MEA"), "KE": ("USD", "en-KE", "MEA"),
    "JP": ("JPY", "ja-JP", "APAC"), "KR": ("KRW", "ko-KR", "APAC"), "CN": ("CNY", "zh-CN", "APAC"),
    "HK": ("USD", "zh-HK", "APAC"), "TW": ("USD", "zh-TW", "APAC"), "IN": ("INR", "hi-IN", "APAC"),
    "SG": ("SGD", "en-SG", "APAC"), "AU": ("AUD", "en-AU", "APAC"), "NZ": ("NZD", "en-NZ", "APAC"),
    "ID": ("USD", "id-ID", "APAC"), "TH": ("USD", "th-TH", "APAC"), "VN": ("USD", "vi-VN", "APAC"),
    "PH": ("USD", "en-PH", "APAC"), "MY": ("USD", "ms-MY", "APAC"),
}
for _cc in _EURO:
    _TABLE[_cc] = ("EUR", f"{_EURO_LANG[_cc]}-{_cc}", "EU")

DEFAULT_MARKET = Market(UNKNOWN_COUNTRY, "USD", "en-US", "NA")


def country_of(ip: str) -> str:
    """ISO country code of an IPv4/IPv6 address from the offline database; ZZ if unknown."""
    return country_code(ip) or UNKNOWN_COUNTRY


def market_for(country: str) -> Market:
    entry = _TABLE.get(country)
    if entry is None:
        return Market(country, DEFAULT_MARKET.currency, DEFAULT_MARKET.locale, DEFAULT_MARKET.region)
    currency, locale, region = entry
    return Market(country, currency, locale, region)


def known_countries() -> list[str]:
    return sorted(_TABLE)
