-- One row per month, country, brand and currency; sale_month is the first day of the month
-- (the CAST is a no-op on BigQuery and keeps the type a DATE where DATE_TRUNC gives a TIMESTAMP).
SELECT
  CAST(DATE_TRUNC(sale_date, MONTH) AS DATE) AS sale_month,
  country_code,
  brand_code,
  currency_code,
  COUNT(*) AS entries,
  COUNT(DISTINCT transaction_no) AS transactions,
  SUM(quantity) AS quantity,
  SUM(net_amount) AS net_amount,
  SUM(vat_amount) AS vat_amount,
  SUM(discount_amount) AS discount_amount
FROM sales_source
WHERE sale_date BETWEEN @start_date AND @end_date
  AND country_code IN UNNEST(@countries)
  AND brand_code IN UNNEST(@brands)
GROUP BY sale_month, country_code, brand_code, currency_code
