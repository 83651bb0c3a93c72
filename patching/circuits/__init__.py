"""Circuit discovery on the unrolled processor (EAP, EAP-IG, exact patching) with
faithfulness measured against random circuits."""
