/* tether: backoff (being written) */
