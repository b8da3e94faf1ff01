"""Where change data comes from: landed objects on S3, listing from watermarks, one folder per source format."""
