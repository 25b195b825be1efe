// HAVEN events page
