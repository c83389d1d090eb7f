/* tether: store_sqlite (being written) */
